"""The Python API: run a benchmark grid, or load finished runs, as pandas DataFrames.

>>> from harness.api import run, load_run, load_runs, summarize_runs
>>> result = run(models=["scratch"], samplers=["sequential"], epochs=5, quiet=True)
>>> result.table[["model", "sampler", "train_ppl"]]           # doctest: +SKIP
>>> load_run(result.path)                                      # the same, from disk
>>> summarize_runs(load_runs([result.path]))                  # mean ± std per group
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.compare import compare_runs
from harness.environment import collect_environment
from harness.executor import Executor, SerialExecutor
from harness.plan import DEFAULT_MODELS, DEFAULT_SAMPLERS, Plan, make_plan
from harness.plugins import load_registry
from harness.registry import Registry
from harness.report import write_report
from harness.results import load_run, load_runs, results_frame
from harness.runner import Outcome, run_combination
from harness.stats import aggregate
from harness.store import RunStore, check_writable

__all__ = ["RunResult", "compare_runs", "execute", "load_run", "load_runs", "run",
           "summarize_runs"]


def summarize_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-seed results (from :func:`load_run` or :func:`load_runs`) summarised per run and
    group: seeds recorded and ok, mean and sample std of each metric over ok seeds."""
    if "run_id" not in frame or frame.empty:
        return aggregate(frame.drop(columns="run_id", errors="ignore"))
    parts = [aggregate(rows).assign(run_id=run_id)
             for run_id, rows in frame.groupby("run_id", sort=False)]
    summary = pd.concat(parts, ignore_index=True)
    return summary[["run_id", *summary.columns.drop("run_id")]]


@dataclass(frozen=True)
class RunResult:
    """A finished (or partly finished) run: its directory and its results table."""

    path: Path
    table: pd.DataFrame
    status: str


def run(
    models: Sequence[str] = DEFAULT_MODELS,
    samplers: Sequence[str] = DEFAULT_SAMPLERS,
    seeds: Sequence[int] = (0,),
    task: str = "timemachine",
    corpus: str | Path | None = None,
    device: str = "auto",
    output_dir: str | Path = "results",
    quiet: bool = False,
    registry: Registry | None = None,
    command: str = "",
    **recipe: Any,
) -> RunResult:
    """Plan, train and record a grid; ``recipe`` overrides task defaults (epochs=..., lr=...).

    Bad input raises :class:`harness.errors.ConfigError` before any run directory exists.
    """
    registry = registry or load_registry()
    plan = make_plan(registry, list(models), list(samplers), list(seeds), task, recipe,
                     Path(corpus) if corpus else None, device)
    check_writable(Path(output_dir))
    return execute(plan, registry, Path(output_dir), quiet=quiet, command=command)


def execute(
    plan: Plan,
    registry: Registry,
    output_dir: Path,
    executor: Executor | None = None,
    quiet: bool = False,
    command: str = "",
) -> RunResult:
    """Run a validated plan into a new run directory under ``output_dir``."""
    manifest = {
        "status": "running",
        "command": command,
        "settings": plan.settings(),
        "environment": collect_environment(plan.device, registry),
    }
    store = RunStore.create(output_dir, manifest, label=plan.task.name)
    if not quiet:
        print(f"run directory: {store.path}", file=sys.stderr)

    def sink(outcome: Outcome) -> None:
        store.append_record(outcome.record, outcome.curve, outcome.traceback)
        if not quiet:
            r = outcome.record
            print(f"{r['model']}/{r['sampler']}/seed{r['seed']}: {r['status']}"
                  + (f", train ppl {r['train_ppl']:.3f}" if r.get("train_ppl") else ""),
                  file=sys.stderr)

    status = "interrupted"
    try:
        (executor or SerialExecutor()).run(
            plan.combinations, lambda c: run_combination(plan, c, registry, quiet), sink
        )
        failed = [r for r in store.records() if r["status"] != "ok"]
        status = "partial" if failed else "complete"
    finally:
        store.update_manifest(status=status)
        write_report(store)
    return RunResult(store.path, results_frame(store.records()), status)
