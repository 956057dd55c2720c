"""Exceptions the library raises for bad input; the CLI turns them into one-line errors."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a problem the user can fix, reported in one line."""


class ConfigError(HarnessError):
    """An invalid name, number or setting, detected before any work starts."""


class CorpusError(HarnessError):
    """The corpus cannot be fetched, verified or read."""


class PluginError(HarnessError):
    """A plugin is broken, or two plugins claim the same name."""


class CheckpointError(HarnessError):
    """A checkpoint is missing, ambiguous, truncated, or holds more than weights."""


class StorageError(HarnessError):
    """The run directory cannot be written (a full disk, lost permissions); what reached
    the disk before is kept and resumable."""
