"""Installed-looking plugin distributions made on disk, for tests of discovery and of
worker processes (which find them through sys.path / PYTHONPATH like any installed one)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(root: Path, dist: str, version: str, module: str, source: str) -> None:
    """Write an installed-looking distribution: a module plus dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[rnn_harness]\n{module} = {module}\n",
                                           encoding="utf-8")
