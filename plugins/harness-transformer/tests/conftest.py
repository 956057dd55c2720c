"""Fixtures of the plugin's own tests: a task file over the harness's tiny corpus.

The harness's core tests switch installed-plugin autoloading off, and they may run in the
same pytest session as these. Tests here that are about discovery through the entry point
therefore ask for autoloading explicitly: ``load_registry(autoload=True)``, or
``harness.testing.invoke_cli(..., autoload=True)`` for the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.testing import write_tiny_task


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """A task file over the tiny corpus, with a tiny recipe."""
    return write_tiny_task(tmp_path)
