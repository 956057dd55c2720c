"""Executors run a plan's combinations and hand each outcome to a sink as it finishes.

An executor knows nothing about models: it gets a ``job`` (combination -> outcome) and a
``sink`` (outcome -> None, normally the store). The serial executor is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from harness.plan import Combination
from harness.runner import Outcome

Job = Callable[[Combination], Outcome]
Sink = Callable[[Outcome], None]


class Executor(Protocol):
    """Runs every combination once and calls ``sink`` with each outcome as it finishes."""

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None: ...


class SerialExecutor:
    """One combination after another, in this process."""

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None:
        for combo in work:
            sink(job(combo))
