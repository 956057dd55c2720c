"""Names: file names (sanitised so nothing is written outside a run directory) and the
label that progress lines, errors and reports give a combination."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_NAME = 251
"""The longest name :func:`safe_name` makes: filesystems allow 255 bytes a file name, and
the store adds at most four (``.csv``). Every name that fitted before names were cut is
unchanged, so older run directories still find their files. Callers that add a prefix
pass a smaller ``max_length``."""

HASH_LENGTH = 16
"""Hex digits of the hash that ends a name :func:`safe_name` had to cut."""


def safe_name(name: str, max_length: int = MAX_NAME) -> str:
    """A file-name-safe version of a plugin or run name (no separators, no dot-dot), at
    most ``max_length`` characters, all ASCII (so as many bytes). A longer name is cut and
    ends in ``-`` and a hash of the whole name, so distinct long names stay distinct; a
    name that is already safe and short enough comes back unchanged."""
    if max_length < HASH_LENGTH + 2:
        raise ValueError(f"max_length must be at least {HASH_LENGTH + 2}, got {max_length}")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"
    if len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]
    head = cleaned[:max_length - HASH_LENGTH - 1].rstrip("._")
    return f"{head}-{digest}" if head else digest


def combination_label(model: str, sampler: str, *, seed: int,
                      settings: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> str:
    """``scratch/sequential/lr=0.5/seed0``: model, sampler, ``--set`` settings, seed."""
    pairs = settings.items() if isinstance(settings, Mapping) else settings
    return "/".join([model, sampler, *(f"{n}={v}" for n, v in pairs), f"seed{seed}"])
