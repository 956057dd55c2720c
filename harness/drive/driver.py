"""The driver: a request becomes a plan (the gate), the plan runs on an executor, and every
outcome lands in the run directory's store as it finishes.

>>> import harness
>>> result = harness.run(models=["scratch"], samplers=["sequential"], epochs=5, quiet=True)
>>> harness.load_run(result.path)                                 # the same, from disk
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.errors import ConfigError, StorageError
from harness.execute.executor import Executor, SerialExecutor
from harness.execute.signals import RunInterrupted, SignalGuard
from harness.machine.determinism import make_thread_invariant, reproducible_mode
from harness.machine.device import available_cores
from harness.machine.peak import run_peaks
from harness.plan.gate import check_executor, check_writable, dry_run, plan_run
from harness.plan.plan import Combination, Plan
from harness.plan.request import ExecutorChoice, RunRequest
from harness.plan.track import check_track
from harness.plugin.manager import load_registry
from harness.plugin.registry import Registry
from harness.results.checkpoints import save_checkpoint, save_vocab
from harness.results.frames import results_frame
from harness.results.report import write_report
from harness.results.efficiency import PEAK_KEY
from harness.results.schema import Manifest
from harness.results.store import RunStore
from harness.drive.environment import collect_environment
from harness.drive.observers import Observers
from harness.drive.resume import load_plan, plan_manifest, remaining, run_settings
from harness.train.combination import Job, Outcome


@dataclass(frozen=True)
class RunResult:
    """A finished (or partly finished) run: its directory, results table and status."""

    path: Path
    table: pd.DataFrame
    status: str


def run(request: RunRequest | None = None, /, *, registry: Registry | None = None,
        executor: Executor | ExecutorChoice | str | None = None,
        **options: Any) -> RunResult:
    """Check, plan, train and record a grid, into a new run directory.

    Give a :class:`RunRequest`, or its fields as keywords with recipe overrides beside
    them (``models=["scratch"], epochs=5, jobs=2``). ``executor`` is a kind
    (``"processes"``), an :class:`ExecutorChoice`, or a configured executor object (e.g.
    ``ProcessExecutor(jobs=2)``) that replaces the one the request chooses. Bad input
    raises :class:`ConfigError` before any run directory exists; Ctrl-C or SIGTERM raises
    :class:`RunInterrupted` after marking the run ``interrupted`` (finish it with
    :func:`resume`).
    """
    if isinstance(executor, (str, ExecutorChoice)):
        options["executor"], executor = executor, None
    if request is not None and options:
        raise ConfigError("give a RunRequest or keyword options, not both")
    if request is not None and not isinstance(request, RunRequest):
        raise ConfigError(f"run() takes a RunRequest or keyword options, got {request!r}")
    request = request or RunRequest.from_options(**options)
    registry = registry or load_registry()
    plan = plan_run(request, registry, isolated=None if executor is None
                    else not isinstance(executor, SerialExecutor),
                    seconds=getattr(executor, "timeout", None))
    chosen = executor or make_executor(request.executor)
    job = Job(plan, registry.loader, request.quiet, request.save_checkpoints,
              registry=registry)
    chosen.check(job)
    manifest = Manifest(run_id="", status="running", settings=run_settings(plan),
                        command=request.command,
                        environment=collect_environment(plan.device, registry,
                                                        reproducible=plan.reproducible),
                        executor=chosen.describe(),
                        plan=plan_manifest(plan, request.save_checkpoints),
                        extra={PEAK_KEY: start_peaks(plan, chosen),
                               "references": plan.task.references_json(),
                               **({"published": [p.to_json() for p in plan.task.published]}
                                  if plan.task.published else {})})
    try:
        store = RunStore.create(request.output_dir, manifest, label=plan.task.name)
    except OSError as error:
        _close(chosen)
        raise StorageError(f"cannot create a run directory in {request.output_dir} "
                           f"({error.strerror or error})") from None
    except BaseException:
        _close(chosen)  # a local Ray the check started must not outlive the failed run
        raise
    if not request.quiet:
        print(f"run directory: {store.path}", file=sys.stderr)
    with store.lock():
        return _drive(store, plan, list(plan.combinations), job, chosen, request.quiet,
                      track=check_track(request.track, registry))


def resume(path: str | Path, *, registry: Registry | None = None,
           executor: ExecutorChoice | Executor | None = None, quiet: bool = False,
           command: str = "", retry_failed: bool = False,
           track: Sequence[str] | None = None) -> RunResult:
    """Finish the run in ``path`` with the plan its manifest holds: only combinations
    without a record run (with ``retry_failed``, also those that failed, crashed or timed
    out). A run made with ``--reproducible`` resumes in that mode. ``track``: observers
    (``--track``) that hear this resumption: the records it adds, not those already in
    the run (a run's tracking is not inherited: give it again)."""
    store = RunStore.open(Path(path))
    check_writable(store.path)
    if isinstance(executor, ExecutorChoice) or executor is None:
        choice = executor or ExecutorChoice()
        check_executor(choice)
        executor = make_executor(choice)
    registry = registry or load_registry()
    track = check_track(track, registry)
    manifest = store.manifest()
    if manifest.reproducible and not reproducible_mode():
        make_thread_invariant()
    plan, save_checkpoints = load_plan(manifest, registry, where=store.path, quiet=quiet)
    dry_run(plan, registry, isolated=not isinstance(executor, SerialExecutor),
            seconds=getattr(executor, "timeout", None))
    job = Job(plan, registry.loader, quiet, save_checkpoints, registry=registry)
    with store.lock():  # before the check, which may start a local Ray: a run in use is
        executor.check(job)  # refused with nothing left running
        work = remaining(plan, store.records(), retry_failed=retry_failed)
        resumed = (*manifest.resumed, {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command, "combinations": len(work), "executor": executor.describe(),
        })
        store.update_manifest(status="running", resumed=resumed,
                              extra=_with_peaks(manifest, start_peaks(plan, executor)))
        if not quiet:
            print(f"resuming {store.path}: {len(work)} of {len(plan.combinations)} "
                  "combinations to run", file=sys.stderr)
        return _drive(store, plan, work, job, executor, quiet, track=track)


def start_threads(plan: Plan, executor: Executor) -> list[int]:
    """The torch thread counts the plan's combinations start with: the executor's threads
    per job (this process's for the serial executor), and where idle workers lend their
    cores (:mod:`harness.execute.processes`), each share they may be given."""
    described = executor.describe()
    threads = {described.get("threads_per_job") or torch.get_num_threads()}
    if described.get("lend_idle_cores"):
        from harness.execute.processes import split_cores

        jobs = min(described.get("jobs") or 1, len(plan.combinations))
        threads |= {t for busy in range(1, jobs + 1)
                    for t in split_cores(available_cores(), busy)}
    return sorted(threads)


def start_peaks(plan: Plan, executor: Executor) -> list[dict[str, Any]]:
    """The manifest's ``peak``: the device's matrix-product peak for each precision the
    plan trains in, at each thread count its combinations start with, measured now (once
    per process: :func:`harness.machine.peak.run_peaks`), with a GPU's published peak."""
    return run_peaks(device=plan.device,
                     precisions=[plan.recipe_for(c).precision for c in plan.combinations],
                     threads=start_threads(plan, executor),
                     mode="strict" if reproducible_mode() else "")


def _with_peaks(manifest: Manifest, peaks: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's extra with ``peaks`` it lacks added (a resumption on other threads)."""
    known = list(manifest.extra.get(PEAK_KEY) or [])
    keys = {(p.get("kind"), p.get("precision"), p.get("threads")) for p in known
            if isinstance(p, dict)}
    return {**manifest.extra, PEAK_KEY: known + [
        p for p in peaks if (p["kind"], p["precision"], p["threads"]) not in keys]}


def make_executor(choice: ExecutorChoice) -> Executor:
    """The executor a checked :class:`ExecutorChoice` stands for."""
    kind = choice.resolved_kind
    if kind == "serial":
        return SerialExecutor()
    if kind == "ray":
        from harness.execute.ray import RayExecutor

        return RayExecutor(choice.address, choice.cpus_per_task or 1, choice.timeout,
                           choice.isolate)
    from harness.execute.processes import ProcessExecutor

    return ProcessExecutor(choice.jobs or 1, choice.timeout, choice.isolate)


def _close(executor: Executor) -> None:
    """Release what the executor's ``check`` may have started (a local Ray), if it can."""
    close = getattr(executor, "close", None)
    if callable(close):
        close()


def _drive(store: RunStore, plan: Plan, work: list[Combination], job: Job,
           executor: Executor, quiet: bool, *, track: Sequence[str] = ()) -> RunResult:
    """Run ``work`` into ``store`` (whose lock the caller holds) and set the final status.
    The observers ``track`` hear the run's start, each record once it is on disk (after
    its curve, replayed), and its end (:mod:`harness.drive.observers`)."""
    if job.save_checkpoints:
        save_vocab(store, plan.dataset)
    guard = SignalGuard()

    def sink(outcome: Outcome) -> None:
        record = outcome.record
        with guard.held():  # a signal waits until the record is whole on disk
            try:
                if outcome.checkpoint is not None:
                    record = record.with_changes(
                        checkpoint=save_checkpoint(store, record.key, outcome.checkpoint))
                store.append_record(record, outcome.curve, outcome.traceback)
            except OSError as error:  # a full disk: stop, and keep what is on it
                raise _storage_error(store, "cannot write to the run directory",
                                     error) from None
        if not quiet:
            ppl = record.metric("train_ppl")
            print(f"{record.label}: {record.status}"
                  + (f", train ppl {ppl:.3f}" if ppl else ""), file=sys.stderr)
        observers.record(record, outcome.curve)

    status, records, finished = "aborted", [], False
    observers = Observers()
    with guard.installed():  # through the clean-up: a second signal must not cut it short
        try:
            if track:
                observers = Observers.open(track, job.prepare(),
                                           held_out=plan.dataset.bounds is not None)
                observers.run_started(store.path, store.manifest().to_json())
            executor.run(work, job, sink)
            records = store.records()
            done = {r.key for r in records if r.ok}
            status = "complete" if all(c.key in done for c in plan.combinations) else "partial"
            finished = True
        except KeyboardInterrupt as error:
            status = "interrupted"
            raise RunInterrupted(getattr(error, "signum", signal.SIGINT), store.path) from None
        finally:
            guard.settle()  # from here a signal would only cut the manifest or report short
            try:
                _finish(store, status, report_errors=finished)
            finally:
                observers.run_finished(status)
    return RunResult(store.path, results_frame(records, manifest=store.manifest()), status)


def _finish(store: RunStore, status: str, *, report_errors: bool) -> None:
    """Record the run's final status, then write its report. A failure to write either
    is a StorageError where ``report_errors`` (no other error is on its way out)."""
    try:
        store.update_manifest(status=status)
        write_report(store)
    except OSError as error:
        if report_errors:
            raise _storage_error(store, f"the run is {status}, but its manifest or report "
                                 "could not be written", error) from None


def _storage_error(store: RunStore, what: str, error: OSError) -> StorageError:
    return StorageError(f"{what} ({error.strerror or error}): {store.path}; the "
                        f"combinations recorded there are kept; free space, then "
                        f"harness run --resume {store.path}")
