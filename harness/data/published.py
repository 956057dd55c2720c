"""Published numbers on a held-out task: what other work reports on the same text.

A held-out task file lists them (``[[published]]``) with their source, whatever recipe and
model produced them, so a report can set a run's test bits per character beside the
literature's: ``model`` describes the published model, ``metric`` is one of ours
(``test_bpc``, ``valid_bpc``), ``value`` its number, ``params`` its size when known. Unlike
``[[reference]]`` entries (:mod:`harness.data.references`), they do not claim that a run's
recipe reproduces them: they place a run among published results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.data.references import short_repr, shown_name

KEYS = ("model", "metric", "value", "source", "params", "note")
METRICS = ("test_bpc", "valid_bpc")
"""The metrics a published held-out number may be given in."""


@dataclass(frozen=True)
class Published:
    """One published number: ``model`` (a description) scored ``value`` in ``metric``."""

    model: str
    metric: str
    value: float
    source: str
    params: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_published(entry: Mapping[str, Any]) -> Published:
    """A :class:`Published` from a task file's (or a manifest's) entry; ValueError naming
    the key for anything else."""
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(shown_name, unknown))}; choose "
                         f"from: {', '.join(KEYS)}")
    for key in ("model", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ValueError(f"{key} must be a non-empty string, got "
                             f"{short_repr(entry.get(key))}")
    metric = entry.get("metric")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {short_repr(metric)}")
    value = entry.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0 or value > 1e6:
        raise ValueError(f"value must be a positive number, got {short_repr(value)}")
    params = entry.get("params")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int)
                               or not 0 < params < 10**15):
        raise ValueError(f"params must be a positive integer, got {short_repr(params)}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ValueError(f"note must be a string, got {short_repr(note)}")
    return Published(entry["model"], metric, float(value), entry["source"], params, note)


def published_from_json(stored: Any) -> tuple[Published, ...]:
    """The entries a manifest stores (its ``published`` key); ValueError if malformed."""
    if stored is None:
        return ()
    if not isinstance(stored, list):
        raise ValueError(f"published must be a list, got {short_repr(stored)}")
    return tuple(parse_published(entry) if isinstance(entry, Mapping) else
                 parse_published({"model": None}) for entry in stored)
