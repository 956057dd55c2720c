"""Executors run a plan's combinations and hand each outcome to a sink as it finishes.

An executor gets a ``job`` (combination -> outcome) and a ``sink`` (outcome -> None: the
driver's store), and keeps the same promises whichever runs the grid:

- ``job`` is picklable (:class:`harness.train.combination.Job`): it may run here or in
  another process or host, where it loads the plugins itself.
- ``sink`` is called in the caller's thread only, once per combination, as each finishes.
- A combination whose process dies reaches the sink as ``crashed``, one past the time
  limit as ``timeout`` (:func:`harness.train.combination.lost_outcome`).
- On ``KeyboardInterrupt`` (SIGTERM included, as
  :class:`harness.execute.signals.RunInterrupted`) it stops the work it started and
  re-raises; combinations that never reached the sink are left to a resume.

Implementations: :class:`SerialExecutor`, :class:`harness.execute.processes.ProcessExecutor`
(``--jobs``, ``--timeout``, ``--isolate``) and :class:`harness.execute.ray.RayExecutor`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from harness.errors import ConfigError
from harness.plan.plan import Combination
from harness.train.combination import Job, Outcome

Sink = Callable[[Outcome], None]

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
        """Nothing to check: the job runs in this process."""

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
