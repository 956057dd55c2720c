"""Names that become file names: sanitised so nothing is written outside a run directory."""

from __future__ import annotations

import re


def safe_name(name: str) -> str:
    """A file-name-safe version of a plugin or run name (no separators, no dot-dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "_"
