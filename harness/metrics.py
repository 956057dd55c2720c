"""The one table of measured numbers: what each is called, how it is shown and compared.

Tables, statistics, the report and compare all read :data:`METRICS`; a record stores each
metric under its name. Adding a metric means adding one entry here (and producing it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    """A measured number of a combination."""

    name: str
    """The record field and results-table column."""
    label: str
    """How a table cell or chart names it."""
    digits: int
    """Decimals shown in Markdown."""
    lower_is_better: bool
    change: Literal["difference", "ratio"]
    """How compare shows a change: ``B - A``, or ``B / A`` for rates."""
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("train_ppl", "train ppl", 3, True, "difference",
           "training perplexity of the last epoch"),
    Metric("valid_ppl", "valid ppl", 3, True, "difference",
           "perplexity on the validation tokens at the last evaluation"),
    Metric("tokens_per_sec", "tokens/sec", 0, False, "ratio",
           "training tokens per second, the median epoch after the first"),
)

NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)

_BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    """The metric called ``name``; KeyError naming the choices otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; choose from: {', '.join(NAMES)}") from None
