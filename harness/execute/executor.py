"""Executors run a plan's combinations and hand each outcome to a sink as it finishes.

An executor knows nothing about models: it gets a ``job`` (combination -> outcome) and a
``sink`` (outcome -> None: the driver's store). Every executor keeps the same promises,
so that ``--resume`` and failure isolation behave alike whichever runs the grid:

- ``job`` is picklable (:class:`harness.train.combination.Job`): an executor may call it here or send
  it to another process or host, where calling it loads the plugins there.
- ``sink`` is called in the caller's thread only (the driver alone writes the run
  directory), once per combination, as each finishes, in any order.
- A combination whose process dies is handed to the sink as ``crashed``, one that runs
  past the executor's time limit as ``timeout`` (:func:`harness.train.combination.lost_outcome`).
- On ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into
  :class:`harness.execute.signals.RunInterrupted`) the executor stops the work it started and
  re-raises; combinations that never reached the sink are simply missing, and a resumed
  run does them.

Implementations: :class:`SerialExecutor` (default, in this process),
:class:`harness.execute.processes.ProcessExecutor` (``--jobs N``, ``--timeout``, ``--isolate``) and
:class:`harness.execute.ray.RayExecutor` (``--executor ray``: one Ray task per
combination, on a local Ray or an existing cluster).
"""

from __future__ import annotations

import math
import numbers
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from harness.plan.dryrun import check_models
from harness.errors import ConfigError
from harness.plan.plan import Combination
from harness.train.combination import Job, Outcome

Sink = Callable[[Outcome], None]

MAX_TIMEOUT = 24 * 24 * 3600
"""The longest ``--timeout`` in seconds, 24 days: the process executor waits with
``poll()``, whose limit is 2**31 - 1 milliseconds (24.8 days)."""


def check_timeout(seconds: float | None) -> None:
    """ConfigError unless ``seconds`` is None (no limit) or a finite number of seconds > 0 and
    at most :data:`MAX_TIMEOUT`: what every executor with a time limit accepts, checked when
    it is made (and again by the driver, before the run directory exists)."""
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) \
            or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(f"--timeout must be a finite number of seconds > 0 and at most "
                          f"{MAX_TIMEOUT} (24 days), got {seconds}")


class Executor(Protocol):
    """Runs every combination once and calls ``sink`` with each outcome as it finishes."""

    def describe(self) -> dict[str, Any]:
        """How it runs work (kind, processes, threads, time limit), for the manifest."""
        ...

    def check(self, job: Job) -> None:
        """Raise ConfigError if this executor cannot run ``job`` (e.g. it cannot be sent to
        another process). Called before the run directory exists."""
        ...

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None: ...


class SerialExecutor:
    """One combination after another, in this process (no time limit, no isolation)."""

    def describe(self) -> dict[str, Any]:
        return {"kind": "serial", "jobs": 1}

    def check(self, job: Job) -> None:
        """Every model accepts its settings (:mod:`harness.plan.dryrun`): plugin code runs in
        this process anyway."""
        check_models(job.plan, job.prepare())

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None:
        for combo in work:
            sink(job(combo))


def check_sendable(job: Job, where: str, option: str) -> None:
    """ConfigError unless ``job`` can be sent to ``where`` (other processes or hosts) and
    load its plugins there: its registry came from ``load_registry()`` and it pickles.
    ``option`` names the choice that sends it, for the message."""
    if job.loader is None:
        raise ConfigError(f"the plugin registry was not made by load_registry(), so {where} "
                          "cannot load it; use the serial executor")
    try:
        pickle.dumps(job)
    except Exception as error:  # noqa: BLE001 - pickling raises many kinds
        raise ConfigError(
            f"the run cannot be sent to {where} ({type(error).__name__}: {error}); plugin "
            "objects registered in this process must be importable at module level, or "
            f"installed as a distribution, to run with {option}"
        ) from None
