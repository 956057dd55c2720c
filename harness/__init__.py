"""harness: a plugin-based benchmark harness for character-level sequence models.

Plugins import the hook marker from here::

    from harness import hookimpl

Everything else a plugin needs lives in :mod:`harness.contracts`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT = "rnn_harness"
"""The pluggy project name, which is also the entry-point group of installed plugins."""

DISTRIBUTION = "rnn-harness"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for hook implementations in plugins."""

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["DISTRIBUTION", "PROJECT", "__version__", "hookimpl"]
