"""The choices the results commands offer, importable without pandas or scipy (the CLI
builds its help from them)."""

from __future__ import annotations

FORMATS = ("markdown", "csv", "json")
"""``--format``: Markdown for people, CSV and JSON (full precision) for programs."""

ALPHA = 0.05
"""Default significance level of Welch's t-test verdicts."""

MIN_SEEDS = 3
"""Ok seeds each side needs before a difference is tested."""
