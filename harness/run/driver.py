"""The Python API: run a benchmark grid, or load finished runs, as pandas DataFrames.

>>> from harness.run.driver import run, load_run, load_runs, summarize_runs
>>> result = run(models=["scratch"], samplers=["sequential"], epochs=5, quiet=True)
>>> result.table[["model", "sampler", "train_ppl"]]           # doctest: +SKIP
>>> load_run(result.path)                                      # the same, from disk
>>> summarize_runs(load_runs([result.path]))                  # mean ± std per group
"""

from __future__ import annotations

import math
import numbers
import operator
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.results.checkpoints import find_checkpoint, load_model, save_checkpoint, save_vocab
from harness.machine.device import resolve_device
from harness.results.compare import compare_runs
from harness.run.environment import collect_environment
from harness.errors import ConfigError
from harness.execute.executor import MAX_TIMEOUT, Executor, SerialExecutor, check_timeout
from harness.train.decoding import encode_prefix, generate
from harness.names import record_label
from harness.plan.plan import DEFAULT_MODELS, DEFAULT_SAMPLERS, Combination, Plan, make_plan
from harness.plugin.manager import load_registry
from harness.plugin.registry import Registry
from harness.results.report import write_report
from harness.machine.determinism import make_thread_invariant, reproducible_mode, warm_up_math
from harness.results.frames import load_run, load_runs, results_frame
from harness.run.resume import load_plan, plan_manifest, remaining
from harness.train.combination import Job, Outcome
from harness.execute.signals import RunInterrupted, SignalGuard
from harness.results.stats import aggregate
from harness.results.store import RunStore, check_writable

__all__ = ["MAX_SEED", "MAX_TIMEOUT", "RunResult", "check_seed", "check_seeds", "check_timeout",
           "compare_runs", "execute", "load_run", "load_runs", "resume", "run", "sample",
           "summarize_runs"]

MAX_SEED = 2**63 - 1
"""The largest seed: torch.manual_seed takes up to 2**64 - 1, but seeds are stored, loaded
into pandas and compared as signed 64-bit integers. Negative seeds are refused: torch maps
them onto large positive ones and Python's ``random.seed`` onto their absolute value."""

def check_seed(value: object, what: str = "seed") -> int:
    """``value`` as a seed (an int, a numpy integer, ...); ConfigError unless it is a whole
    number from 0 to :data:`MAX_SEED`."""
    try:
        if isinstance(value, bool):
            raise TypeError
        seed = operator.index(value)  # ints and numpy integers, not 1.5 or "1"
    except TypeError:
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be from 0 to 2**63 - 1 ({MAX_SEED}), got {seed}")
    return seed


def check_seeds(seeds: Iterable[object], what: str = "seed") -> list[int]:
    """Seeds as plain ints, each checked by :func:`check_seed`; repeats are dropped (keeping
    the first), as repeated model names are, so no combination is trained twice."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ConfigError(f"seeds must be a list of integers, got {seeds!r}")
    return list(dict.fromkeys(check_seed(seed, what) for seed in seeds))


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
    executor: Executor | None = None,
    save_checkpoints: bool = False,
    grid: Mapping[str, Sequence[Any]] | None = None,
    **recipe: Any,
) -> RunResult:
    """Plan, train and record a grid; ``recipe`` overrides task defaults (epochs=..., lr=...).

    Bad input raises :class:`harness.errors.ConfigError` before any run directory exists.
    ``executor``: serial by default, or e.g. ``ProcessExecutor(jobs=2, timeout=600)`` or
    ``harness.execute.ray.RayExecutor()``. ``grid``: hyper-parameter values to multiply
    the grid by, as ``--set`` (``{"num_hiddens": [256, 512], "lr": [0.5, 1.0]}``).
    """
    check_timeout(getattr(executor, "timeout", None))  # before output_dir is made
    registry = registry or load_registry()
    plan = make_plan(registry, list(models), list(samplers), check_seeds(seeds), task, recipe,
                     Path(corpus) if corpus else None, device, grid, quiet)
    check_writable(Path(output_dir))
    return execute(plan, registry, Path(output_dir), executor, quiet, command,
                   save_checkpoints)


def execute(
    plan: Plan,
    registry: Registry,
    output_dir: Path,
    executor: Executor | None = None,
    quiet: bool = False,
    command: str = "",
    save_checkpoints: bool = False,
) -> RunResult:
    """Run a validated plan into a new run directory under ``output_dir``.

    Ctrl-C or SIGTERM stops it: the manifest says ``interrupted``, what finished is on disk,
    and :class:`harness.execute.signals.RunInterrupted` (a ``KeyboardInterrupt`` that knows the
    run directory) propagates; :func:`resume` finishes the run.
    """
    executor = executor or SerialExecutor()
    check_timeout(getattr(executor, "timeout", None))  # one changed after it was made
    job = Job(plan, registry.loader, quiet, save_checkpoints, registry=registry)
    executor.check(job)
    manifest = {
        "status": "running",
        "command": command,
        "settings": plan.settings(),
        "environment": collect_environment(plan.device, registry),
        "executor": executor.describe(),
        "plan": plan_manifest(plan, save_checkpoints),
    }
    try:
        store = RunStore.create(output_dir, manifest, label=plan.task.name)
    except BaseException:
        _close(executor)  # a local Ray the check started must not outlive the failed run
        raise
    if not quiet:
        print(f"run directory: {store.path}", file=sys.stderr)
    with store.lock():
        return _drive(store, plan, list(plan.combinations), job, executor, quiet)


def resume(
    path: str | Path,
    registry: Registry | None = None,
    executor: Executor | None = None,
    quiet: bool = False,
    command: str = "",
    retry_failed: bool = False,
) -> RunResult:
    """Continue the run in ``path`` with the plan its manifest holds: run only the
    combinations that have no record yet (with ``retry_failed``, also those that failed,
    crashed or timed out). ConfigError if it is not a resumable run or is in use.

    A run made with ``--reproducible`` resumes in that mode (see :mod:`harness.machine.determinism`).
    """
    store = RunStore.open(Path(path))
    check_writable(store.path)
    registry = registry or load_registry()
    executor = executor or SerialExecutor()
    check_timeout(getattr(executor, "timeout", None))
    manifest = store.manifest()
    if manifest.get("environment", {}).get("reproducible") and not reproducible_mode():
        make_thread_invariant()
    plan, save_checkpoints = load_plan(manifest, registry, store.path, quiet)
    job = Job(plan, registry.loader, quiet, save_checkpoints, registry=registry)
    with store.lock():  # before the check, which may start a local Ray: a run in use is
        executor.check(job)  # refused with nothing left running
        work = remaining(plan, store.records(), retry_failed)
        resumed = manifest.get("resumed", []) + [{
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command, "combinations": len(work), "executor": executor.describe(),
        }]
        store.update_manifest(status="running", resumed=resumed)
        if not quiet:
            print(f"resuming {store.path}: {len(work)} of {len(plan.combinations)} "
                  "combinations to run", file=sys.stderr)
        return _drive(store, plan, work, job, executor, quiet)


def _close(executor: Executor) -> None:
    """Release what the executor's ``check`` may have started (a local Ray), if it can."""
    close = getattr(executor, "close", None)
    if callable(close):
        close()


def _drive(store: RunStore, plan: Plan, work: list[Combination], job: Job,
           executor: Executor, quiet: bool) -> RunResult:
    """Run ``work`` into ``store`` (whose lock the caller holds) and set the final status."""
    if job.save_checkpoints:
        save_vocab(store, plan.dataset)
    guard = SignalGuard()

    def sink(outcome: Outcome) -> None:
        record = outcome.record
        with guard.held():  # a signal waits until the record is whole on disk
            if outcome.checkpoint is not None:
                record["checkpoint"] = save_checkpoint(store, record["key"], outcome.checkpoint)
            store.append_record(record, outcome.curve, outcome.traceback)
        if not quiet:
            print(f"{record_label(record)}: {record['status']}"
                  + (f", train ppl {record['train_ppl']:.3f}" if record.get("train_ppl") else ""),
                  file=sys.stderr)

    status = "aborted"
    with guard.installed():  # through the clean-up: a second signal must not cut it short
        try:
            executor.run(work, job, sink)
            records = store.records()
            done = {r["key"] for r in records if r["status"] == "ok"}
            status = "complete" if all(c.key in done for c in plan.combinations) else "partial"
        except KeyboardInterrupt as error:
            status = "interrupted"
            raise RunInterrupted(getattr(error, "signum", signal.SIGINT), store.path) from None
        finally:
            guard.settle()  # from here a signal would only cut the manifest or report short
            store.update_manifest(status=status)
            write_report(store)
    return RunResult(store.path, results_frame(records), status)


def sample(
    path: str | Path,
    model: str,
    prefix: str,
    sampler: str | None = None,
    seed: int | None = None,
    length: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    draw_seed: int | None = None,
    device: str = "cpu",
    registry: Registry | None = None,
    settings: Mapping[str, object] | None = None,
) -> str:
    """Generate text from a checkpoint saved in run ``path`` (``--save-checkpoints``):
    ``prefix`` and ``length`` more tokens, greedy unless ``temperature`` > 0.

    ``settings`` picks the point of a ``--set`` grid (``{"hidden": 16}``) when the run saved
    several. ``prefix`` is preprocessed as the corpus was (lower case, non-letters to one
    space); a token the vocabulary lacks is a ConfigError, raised before the model loads.
    """
    if length < 0 or (top_k is not None and top_k < 1):
        raise ConfigError("length must be >= 0 and top-k >= 1")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), "
                          f"got {temperature}")
    if draw_seed is not None:
        draw_seed = check_seed(draw_seed, "--draw-seed")
    checkpoint = find_checkpoint(RunStore.open(Path(path)), model, sampler, seed, settings)
    ids = encode_prefix(prefix, checkpoint.vocab, checkpoint.tokenizer)
    resolved = resolve_device(device)
    net = load_model(checkpoint, registry or load_registry(), resolved)
    warm_up_math(resolved)
    generator = torch.Generator().manual_seed(draw_seed) if draw_seed is not None else None
    tokens = generate(net, ids, length, resolved, temperature=temperature, top_k=top_k,
                      generator=generator)
    return checkpoint.vocab.decode(tokens, checkpoint.separator)
