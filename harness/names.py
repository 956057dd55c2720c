"""Names: file names (sanitised so nothing is written outside a run directory) and the
label that progress lines, errors and reports give a combination."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def safe_name(name: str) -> str:
    """A file-name-safe version of a plugin or run name (no separators, no dot-dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "_"


def combination_label(model: str, sampler: str, *, seed: int,
                      settings: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> str:
    """``scratch/sequential/lr=0.5/seed0``: model, sampler, ``--set`` settings, seed."""
    pairs = settings.items() if isinstance(settings, Mapping) else settings
    return "/".join([model, sampler, *(f"{n}={v}" for n, v in pairs), f"seed{seed}"])


def record_label(record: Mapping[str, Any]) -> str:
    """:func:`combination_label` of a stored record."""
    return combination_label(record["model"], record["sampler"], seed=record["seed"],
                             settings=record.get("settings") or {})
