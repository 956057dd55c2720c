"""Fixtures of the plugin's own tests: a small corpus and a task file over it.

The harness's core tests switch installed-plugin autoloading off (they set
``HARNESS_DISABLE_PLUGIN_AUTOLOAD``), and they may run in the same pytest session as these.
Tests here that are about discovery through the entry point therefore ask for autoloading
explicitly (``load_registry(autoload=True)``, or the :func:`autoload` fixture for the CLI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plugin.manager import AUTOLOAD_ENV


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed plugins load, as for a user who has not switched autoloading off."""
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """A task file over a small corpus of our own, with a tiny recipe."""
    (tmp_path / "tiny.txt").write_text("\n".join(
        f"The Time Traveller, line {i}: a quick brown fox jumps over the lazy dog!"
        for i in range(40)), encoding="utf-8")
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\ntokenizer = "char"\n[corpus]\npath = "tiny.txt"\n'
        "[recipe]\nepochs = 3\nbatch_size = 4\nnum_steps = 8\nnum_hiddens = 32\n"
        "max_tokens = 1500\nvalid_tokens = 300\neval_every = 1\n"
        '[generate]\nprefixes = ["the time"]\nnum_preds = 10\n',
        encoding="utf-8",
    )
    return path
