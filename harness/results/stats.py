"""Statistics over repeated seeds: per-group summaries and a significance test.

What the numbers mean (the README repeats this):

- A *group* is one (model, sampler) pair, plus any per-record settings of a grid
  (:func:`group_columns`); its *seeds* are its records.
- Only records with status ``ok`` enter a mean. Every other status (``failed``,
  ``diverged``, and whatever an executor adds, such as ``crashed`` or ``timeout``) is
  counted and listed, never averaged: ``n_ok`` of ``n`` seeds.
- ``mean`` is the arithmetic mean over the ok seeds; ``std`` the sample standard deviation
  (``ddof=1``, divisor n - 1), undefined (NaN) for a single seed.
- Two groups are compared with **Welch's t-test** (two-sided, unequal variances:
  ``scipy.stats.ttest_ind(a, b, equal_var=False)``), only when both sides have at least
  :data:`MIN_SEEDS` ok seeds, and called significant when ``p < alpha`` (default
  :data:`ALPHA`). Each comparison is tested on its own: no correction for testing many rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness.metrics import NAMES as METRICS
from harness.results.efficiency import GROUP_COLUMNS as EFFICIENCY, group_efficiency
from harness.results.options import ALPHA, MIN_SEEDS


BASE_GROUP = ("model", "sampler")

SETTING_PREFIX = "setting."
"""Per-record settings (a record's ``settings`` mapping, e.g. its point of a
hyper-parameter grid) are columns ``setting.<name>`` of a results frame, and part of
the group."""

TEST_NAME = "Welch's t-test (two-sided, scipy.stats.ttest_ind with equal_var=False)"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and count of the finite values of one metric."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Summarise the finite ``values`` (NaN and None are ignored)."""
    data = _finite(values)
    if not data.size:
        return Summary(math.nan, math.nan, 0)
    std = float(np.std(data, ddof=1)) if data.size > 1 else math.nan
    return Summary(float(np.mean(data)), std, int(data.size))


@dataclass(frozen=True)
class TestResult:
    """The outcome of a two-sample test; ``p_value`` is NaN when it could not be run."""

    statistic: float
    p_value: float
    reason: str = ""
    """Why no test was run ('' when it was)."""

    def significant(self, alpha: float = ALPHA) -> bool:
        return not math.isnan(self.p_value) and self.p_value < alpha


def welch_test(a: Sequence[float], b: Sequence[float], min_seeds: int = MIN_SEEDS) -> TestResult:
    """Welch's unequal-variance t-test of ``a`` against ``b`` (finite values only).

    Not run (NaN p-value, with a reason) when either side has fewer than ``min_seeds``
    values, or when both sides are constant (the statistic is then undefined or infinite).
    """
    x, y = _finite(a), _finite(b)
    if min(x.size, y.size) < min_seeds:
        return TestResult(math.nan, math.nan, f"fewer than {min_seeds} seeds")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return TestResult(math.nan, math.nan, "no variance")
    result = scipy_stats.ttest_ind(x, y, equal_var=False)
    return TestResult(float(result.statistic), float(result.pvalue))


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that define a group: model, sampler and any per-record settings
    (columns named ``setting.<name>``, from a record's ``settings`` mapping)."""
    return [*BASE_GROUP, *sorted(c for c in frame.columns if c.startswith(SETTING_PREFIX))]


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group of a per-seed results frame (as :func:`harness.results.frames.load_run`).

    Columns: the group columns, ``n`` (seeds recorded), ``n_ok``, ``<metric>_mean`` and
    ``<metric>_std`` for each of :data:`METRICS` over the ok seeds, and ``not_ok``: the
    other statuses with their seeds, e.g. ``diverged: 1, 2; failed: 0`` ('' if none). A
    frame with the efficiency columns (:func:`harness.results.frames.results_frame` gives
    them) adds the group's (:func:`harness.results.efficiency.group_efficiency`) last.
    """
    keys = group_columns(frame)
    with_efficiency = "flops_per_sec" in frame
    rows = []
    for row, group in iter_groups(frame, keys):
        ok = group[group["status"] == "ok"]
        row.update(n=len(group), n_ok=len(ok))
        for metric in METRICS:  # a column the frame lacks was not measured
            summary = summarize(ok[metric].tolist() if metric in ok else [])
            row[f"{metric}_mean"], row[f"{metric}_std"] = summary.mean, summary.std
        row["not_ok"] = not_ok_text(group)
        if with_efficiency:
            row.update(group_efficiency(ok))
        rows.append(row)
    columns = [*keys, "n", "n_ok", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
               "not_ok", *(EFFICIENCY if with_efficiency else ())]
    summary = pd.DataFrame(rows, columns=columns)
    if with_efficiency:  # True, False, or None where nothing told (not NaN)
        summary["tokens_per_sec_unreliable"] = summary["tokens_per_sec_unreliable"].astype(
            object).where(summary["tokens_per_sec_unreliable"].notna(), None)
    return summary


def iter_groups(frame: pd.DataFrame,
                keys: Sequence[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """Each group of ``frame`` by ``keys``, in sorted order, as (key values, rows); a
    missing key value (NaN) is given as None."""
    for values, group in frame.groupby(list(keys), sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield {k: (None if pd.isna(v) else v) for k, v in zip(keys, values)}, group


def not_ok_text(group: pd.DataFrame) -> str:
    """The records of ``group`` whose status is not ok, as ``status: seeds; ...``."""
    bad = group[group["status"] != "ok"]
    parts = []
    for status, rows in bad.groupby(bad["status"].fillna("unknown"), sort=True):
        seeds = ", ".join(str(s) for s in sorted(rows["seed"].tolist()))
        parts.append(f"{status}: {seeds}")
    return "; ".join(parts)


def _finite(values: Sequence[float]) -> np.ndarray:
    data = np.array([v for v in values if v is not None], dtype=float)
    return data[np.isfinite(data)]
