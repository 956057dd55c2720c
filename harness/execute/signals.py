"""Ctrl-C and SIGTERM as an exception the run can clean up after.

By default SIGINT raises ``KeyboardInterrupt`` wherever Python happens to be, and SIGTERM
kills the process without running any ``finally``. While a run is in progress both become
:class:`RunInterrupted`, so the driver can mark the run ``interrupted`` and stop its
workers; inside :meth:`SignalGuard.held` (writing a record) the signal waits until the
write is done, so a record is never half-written by our own hand. Once a run is stopping,
further signals are ignored until the guard is removed: a second Ctrl-C must not break off
the clean-up (stopping every worker, writing the manifest and report) half-way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM. A ``KeyboardInterrupt``, so that a plugin's
    ``except Exception`` never swallows it."""

    def __init__(self, signum: int, run_dir: Path | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = run_dir
        """The run directory it interrupted, once the driver knows it."""

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class SignalGuard:
    """Turns the first SIGINT or SIGTERM into :class:`RunInterrupted` while installed, and
    ignores any after it (the run is already stopping)."""

    def __init__(self) -> None:
        self._held = 0
        self._pending: int | None = None
        self._raised: int | None = None  # the signal raised, until the run settles
        self.fired = False
        """Whether a signal has been raised as :class:`RunInterrupted`."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:
            return
        if self._held:
            self._pending = signum
            return
        self._fire(signum)

    def _fire(self, signum: int) -> None:
        self.fired, self._raised = True, signum
        raise RunInterrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[SignalGuard]:
        """Install the handlers for the duration (only possible in the main thread; in any
        other thread this does nothing and the process keeps its own handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED}
        _ACTIVE.append(self)
        try:
            yield self
        finally:
            _ACTIVE.remove(self)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def settle(self) -> None:
        """The run is over, or stopping: from now on signals are ignored while installed,
        and one waiting in :meth:`held` is dropped, so the manifest and report are written
        whole and the run's own outcome (its status, or the error that ended it) stands."""
        self.fired, self._pending, self._raised = True, None, None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Delay a signal until the block is done, then raise it."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held and self._pending is not None:
            signum, self._pending = self._pending, None
            self._fire(signum)


_ACTIVE: list[SignalGuard] = []
"""The guards installed in this process, innermost last."""


def raise_if_interrupted() -> None:
    """Raise again the interruption an installed guard raised, if it has not stopped the
    run. Python runs a signal handler wherever the main thread is, and foreign code that
    runs it (Ray's C++ wait loop checks for signals) may drop the exception: the run would
    then wait on, deaf to the signal that was meant to stop it. A driver loop that waits
    in such code calls this on every turn."""
    if _ACTIVE and _ACTIVE[-1]._raised is not None:
        raise RunInterrupted(_ACTIVE[-1]._raised)
