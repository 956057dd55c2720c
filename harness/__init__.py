"""harness: a plugin-based benchmark harness for character-level sequence models.

The public Python API; the CLI and the README's examples use only these names::

    import harness
    result = harness.run(models=["scratch"], samplers=["sequential"], epochs=5, quiet=True)
    harness.load_run(result.path)

Plugins import the hook marker from here (``from harness import hookimpl``), the specs
they register from :mod:`harness.plugin.contracts`, and test themselves with
:mod:`harness.testing`.

Names are imported when first used, so ``import harness`` (and ``harness --help``) loads
neither torch nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.errors import (
    CheckpointError,
    ConfigError,
    CorpusError,
    HarnessError,
    PluginError,
    StorageError,
)
from harness.plugin.hookspecs import PROJECT, hookimpl
from harness.version import DISTRIBUTION, __version__

_LAZY = {
    # running
    "RunRequest": "harness.plan.request",
    "ExecutorChoice": "harness.plan.request",
    "run": "harness.drive.driver",
    "resume": "harness.drive.driver",
    "RunResult": "harness.drive.driver",
    "generate": "harness.drive.generate",
    "parse_set_options": "harness.plan.grid",
    "parse_budget": "harness.plan.budget",
    "parse_target": "harness.plan.budget",
    "load_registry": "harness.plugin.manager",
    # executors, for the Python API
    "SerialExecutor": "harness.execute.executor",
    "ProcessExecutor": "harness.execute.processes",
    "RayExecutor": "harness.execute.ray",
    "RunInterrupted": "harness.execute.signals",
    "WorkerError": "harness.execute.processes",
    # results
    "load_run": "harness.results.frames",
    "load_runs": "harness.results.frames",
    "summarize_runs": "harness.results.frames",
    "format_summary": "harness.results.tables",
    "compare_runs": "harness.results.compare",
    "format_comparison": "harness.results.compare",
    "paired_runs": "harness.results.paired",
    "format_paired_runs": "harness.results.paired",
    "report": "harness.results.report",
    "RunStore": "harness.results.store",
    # what the CLI shows without importing torch
    "FORMATS": "harness.results.options",
    "ALPHA": "harness.results.options",
    "EXECUTORS": "harness.plan.request",
}

__all__ = [
    "DISTRIBUTION", "PROJECT", "__version__", "hookimpl",
    "CheckpointError", "ConfigError", "CorpusError", "HarnessError", "PluginError",
    "StorageError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from harness.execute.executor import SerialExecutor
    from harness.execute.processes import ProcessExecutor, WorkerError
    from harness.execute.ray import RayExecutor
    from harness.execute.signals import RunInterrupted
    from harness.plan.request import EXECUTORS, ExecutorChoice, RunRequest
    from harness.plan.budget import parse_budget, parse_target
    from harness.plan.grid import parse_set_options
    from harness.plugin.manager import load_registry
    from harness.results.compare import compare_runs, format_comparison
    from harness.results.paired import format_paired_runs, paired_runs
    from harness.results.frames import load_run, load_runs, summarize_runs
    from harness.results.report import report
    from harness.results.store import RunStore
    from harness.results.options import ALPHA, FORMATS
    from harness.results.tables import format_summary
    from harness.drive.driver import RunResult, resume, run
    from harness.drive.generate import generate
