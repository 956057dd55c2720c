"""Tables as text: Markdown (with every text cell escaped), CSV or JSON.

``harness run``, ``harness report`` and ``harness compare`` print their tables through
:func:`render`, so ``--format`` means the same everywhere: ``markdown`` for people (numbers
rounded, ``mean ± std``), ``csv`` and ``json`` for programs (full precision, one column per
number, missing numbers empty in CSV and ``null`` in JSON).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from harness.metrics import D2L_NAMES, METRICS
from harness.results.efficiency import marked, si
from harness.results.options import FORMATS
from harness.results.stats import group_columns
from harness.results.store import to_json

_SPECIAL = re.compile(r"([\\`|*_\[\]<>#~])")


def escape_markdown(value: object) -> str:
    """``value`` as text that stays literal inside a Markdown table cell.

    Markdown punctuation (backslash, backtick, pipe, ``* _ [ ] < > # ~``) is
    backslash-escaped, ``&`` becomes ``&amp;``, and line breaks become ``<br>``, so
    generated text can neither end the cell, start a code span nor break the row.
    """
    text = str(value).replace("&", "&amp;")
    text = _SPECIAL.sub(r"\\\1", text)
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def markdown_table(frame: pd.DataFrame, floatfmt: str | list[str] = "g",
                   index: bool = False) -> str:
    """``frame`` as a Markdown table; text cells are escaped, missing values left empty."""
    shown = frame.copy()
    text_columns = [i for i, c in enumerate(shown.columns)
                    if not pd.api.types.is_numeric_dtype(shown[c])]
    for i in range(len(shown.columns)):
        # Object cells, so that a missing number is None (tabulate prints NaN as "nan").
        cells = [_cell(v) if i in text_columns else _missing(v) for v in shown.iloc[:, i]]
        shown.isetitem(i, pd.Series(cells, index=shown.index, dtype=object))
    if shown.empty:  # header only; tabulate sees no columns, so no column indexes to give
        return shown.to_markdown(index=index, disable_numparse=True)
    offset = 1 if index else 0  # tabulate counts the index as a column
    return shown.to_markdown(index=index, floatfmt=floatfmt, missingval="",
                             disable_numparse=[i + offset for i in text_columns])


def render(frame: pd.DataFrame, fmt: str, markdown: pd.DataFrame | None = None) -> str:
    """``frame`` in ``fmt`` (one of :data:`FORMATS`); Markdown shows ``markdown`` instead
    when given (a display version of the same rows)."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    if fmt == "json":
        return to_json(frame.to_dict(orient="records"), indent=2)
    if fmt == "markdown":
        return markdown_table(frame if markdown is None else markdown)
    raise ValueError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")


def mean_std(mean: float, std: float, digits: int) -> str:
    """``1.234 ± 0.012``; only the mean when the spread is undefined; '' when both are."""
    if mean is None or math.isnan(mean):
        return ""
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_display(summary: pd.DataFrame,
                    details: Mapping[str, Sequence[object]] | None = None) -> pd.DataFrame:
    """The Markdown face of :func:`harness.results.stats.aggregate`: ``seeds ok`` as ``n_ok/n``,
    each metric as ``mean ± std``, and the records that are not ok. ``details``: columns
    (name to one cell per group) shown after ``seeds ok``, such as ``params``."""
    keys = group_columns(summary)
    shown = summary[keys].copy()
    shown["seeds ok"] = [f"{ok}/{n}" for ok, n in zip(summary["n_ok"], summary["n"])]
    for name, cells in (details or {}).items():
        shown[name] = list(cells)
    for metric in METRICS:
        name = metric.name
        if metric.name not in D2L_NAMES and (f"{name}_mean" not in summary
                                             or summary[f"{name}_mean"].isna().all()):
            continue  # a metric no group measured (bpc on d2l's task) is not a column
        shown[name] = [mean_std(m, s, metric.digits)
                       for m, s in zip(summary[f"{name}_mean"], summary[f"{name}_std"])]
        if name == "tokens_per_sec":
            _efficiency_cells(shown, summary)
    shown["not ok"] = summary["not_ok"]
    return shown.astype(object)


def _efficiency_cells(shown: pd.DataFrame, summary: pd.DataFrame) -> None:
    """The tokens/sec cells marked unreliable (:mod:`harness.results.efficiency`), then
    FLOPs per token, achieved FLOP/s and % of peak where any group declared FLOPs."""
    flags = (list(summary["tokens_per_sec_unreliable"])
             if "tokens_per_sec_unreliable" in summary else [None] * len(summary))
    shown["tokens_per_sec"] = marked(shown["tokens_per_sec"], flags)
    if "flops_per_token" not in summary or summary["flops_per_token"].isna().all():
        return
    shown["FLOPs/token"] = [count_text([v]) for v in summary["flops_per_token"]]
    shown["FLOP/s"] = marked([si(v) for v in summary["flops_per_sec_mean"]], flags)
    shown["% of peak"] = marked([_significant(m, s) for m, s in zip(
        summary["percent_of_peak_mean"], summary["percent_of_peak_std"])], flags)


def _significant(mean: float, std: float) -> str:
    """``12.3 ± 0.4``: one decimal, or 3 significant digits below 1 (a small model's share
    of a peak may be 0.00812 %), the spread to the same decimals; only the mean when the
    spread is undefined; '' when both are."""
    if mean is None or math.isnan(mean):
        return ""
    digits = 2 - math.floor(math.log10(abs(mean))) if 0 < abs(mean) < 1 else 1
    return mean_std(mean, std, digits)


def format_summary(summary: pd.DataFrame, fmt: str = "markdown",
                   details: Mapping[str, Sequence[object]] | None = None) -> str:
    """The per-group results table in ``fmt`` (what ``harness run`` and ``report`` print);
    ``details``: extra Markdown columns, as :func:`summary_display` takes them."""
    return render(summary, fmt, summary_display(summary, details))


def count_text(values: Sequence[object]) -> str:
    """A count that should be the same for every seed (parameters, FLOPs per token) as a
    table cell: the one value, ``low to high`` when seeds differ, '' when none has one."""
    numbers = sorted({float(v) for v in values if v is not None and not isinstance(v, bool)
                      and isinstance(v, (int, float)) and math.isfinite(v)})
    shown = [f"{v:.0f}" if v.is_integer() else f"{v:.4g}" for v in numbers]
    return "" if not shown else shown[0] if len(shown) == 1 else f"{shown[0]} to {shown[-1]}"


def _missing(value: object) -> object:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _cell(value: object) -> object:
    if _missing(value) is None:
        return None
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}={v}" for k, v in value.items())
    return escape_markdown(value) if isinstance(value, str) else value
