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
           "training tokens per second: the median epoch after the first (d2l's task), "
           "or all training tokens over the training seconds, validation excluded"),
    Metric("train_bpc", "train bpc", 3, True, "difference",
           "bits per token (character) on the training tokens since the last validation"),
    Metric("valid_bpc", "valid bpc", 3, True, "difference",
           "bits per token on the whole validation split, at the best validation"),
    Metric("test_bpc", "test bpc", 3, True, "difference",
           "bits per token on the whole test split, scored once with the best state"),
    Metric("test_ppl", "test ppl", 3, True, "difference",
           "perplexity on the whole test split, scored once with the best state"),
    Metric("tokens_to_target", "tokens to target", 0, True, "ratio",
           "training tokens seen when validation first reached --target"),
    Metric("seconds_to_target", "seconds to target", 1, True, "ratio",
           "training seconds (validation excluded) when validation first reached --target"),
)

D2L_NAMES: tuple[str, ...] = ("train_ppl", "valid_ppl", "tokens_per_sec")
"""The metrics every record stores, measured or not (older run directories hold these
three); the others are stored only when measured."""

BITS = 1 / 0.6931471805599453
"""Bits per nat: a mean negative log-likelihood in nats times this is bits per token."""

NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)

_BY_NAME = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    """The metric called ``name``; KeyError naming the choices otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; choose from: {', '.join(NAMES)}") from None
