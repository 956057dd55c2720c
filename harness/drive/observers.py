"""The run's observers (``--track NAME``): observer plugins hear the run's events here, in
the driver's main process, and a failing one never costs a result.

Events, in order (:class:`harness.plugin.contracts.Observer`): ``run_started`` once; for
each combination, as its record lands in the run directory, its curve replayed as
``epoch`` events (d2l's task) or ``evaluation`` events (a held-out task), then ``record``;
``run_finished`` once, however the run ends.

Why replayed: a combination trains in the driver's process only with the serial executor;
with ``--jobs`` or Ray it trains in a worker that runs no observer, and its curve comes
back with its record. So for every executor alike, an observer hears a combination's
epochs when it has finished, all at once; a combination still training (or killed with
the run) has sent none.

A record is on disk before any observer hears of it. An observer whose factory or method
raises is warned about in one line (a ``RuntimeWarning``) and dropped: it hears nothing
more of the run, and the others and the run go on. Ctrl-C still stops the run.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.plugin.registry import Registry
from harness.results.schema import Record


class Observers:
    """The observers of one run, each heard in turn (in ``--track`` order)."""

    def __init__(self, observers: Iterable[tuple[str, Any]] = (), *,
                 held_out: bool = False) -> None:
        self.live: list[tuple[str, Any]] = list(observers)
        """(name, observer) of those still listening."""
        self.held_out = held_out
        """Replay curves as ``evaluation`` events (a held-out task), else ``epoch`` events."""

    @classmethod
    def open(cls, names: Sequence[str], registry: Registry, *,
             held_out: bool) -> Observers:
        """Build the observers ``names`` (checked by :func:`harness.plan.gate.check_track`);
        one whose factory raises is warned about and left out."""
        built = []
        for name in names:
            try:
                built.append((name, registry.observer(name).factory()))
            except (Exception, SystemExit) as error:  # noqa: BLE001 - the plugin's error
                _warn(name, "start", error)
        return cls(built, held_out=held_out)

    def run_started(self, run_dir: Path, manifest: Mapping[str, Any]) -> None:
        """The run directory exists and its combinations are about to run."""
        self._emit("run_started", Path(run_dir), dict(manifest))

    def record(self, record: Record, curve: Sequence[Mapping[str, Any]]) -> None:
        """A combination's record landed: its curve's events, then the record's."""
        if not self.live:
            return
        rows = [dict(row) for row in curve]
        event = "evaluation" if self.held_out else "epoch"
        for row in rows:
            self._emit(event, record, row)
        self._emit("record", record, rows)

    def run_finished(self, status: str) -> None:
        """The run ended (``complete``, ``partial``, ``interrupted``, ``aborted``)."""
        self._emit("run_finished", status)

    def _emit(self, event: str, *args: Any) -> None:
        """Call ``event`` on every live observer, each with its own copy of ``args`` (so
        one cannot change what the next one hears)."""
        for name, observer in list(self.live):
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(*copy.deepcopy(args))
            except (Exception, SystemExit) as error:  # noqa: BLE001 - never lose a result
                self.live = [(n, o) for n, o in self.live if o is not observer]
                _warn(name, event, error)


def _warn(name: str, event: str, error: BaseException) -> None:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    warnings.warn(f"observer {name!r} failed at {event} and is dropped for the rest of the "
                  f"run (the results are kept): {text}", RuntimeWarning, stacklevel=3)

