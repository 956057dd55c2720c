"""Paired comparisons on a held-out task's test split: per seed, and per test token.

Every model of a run with ``[splits]`` is scored on the same test characters, and each ok
record keeps every scored token's loss (``extra["test_nll"]``). Two groups (model, sampler
and settings, as in :mod:`harness.results.stats`) are compared on matched data twice:

- **per seed**: a paired t-test (two-sided) of the per-seed differences of ``test_bpc``
  over the seeds both groups have: the spread between training seeds;
- **per token**: a circular moving-block bootstrap over test positions of the mean
  per-token difference in bits, each side's losses averaged over its seeds, with its
  percentile interval: the spread over test text, given these trained models. Neighbouring
  characters' losses are correlated, so whole blocks are resampled (an iid resample of
  single tokens would make the interval too narrow).

A verdict is ``better`` or ``worse`` when the interval excludes 0. The positions scored
depend on ``batch_size`` (:func:`harness.train.heldout.score`), so only records with the
same task, corpus, split bounds and ``batch_size`` are paired.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness.errors import ConfigError
from harness.metrics import BITS, metric as metric_info
from harness.numbers import check_number
from harness.results.frames import results_frame
from harness.results.losses import decode_losses
from harness.results.schema import Record
from harness.results.stats import BASE_GROUP, SETTING_PREFIX, group_columns, iter_groups
from harness.results.store import RunStore, to_json
from harness.results.tables import escape_markdown, markdown_table, render

TITLE = "Paired comparison on the test split"
RESAMPLES = 2000
"""Bootstrap resamples: enough for stable 95% percentile bounds."""
BLOCK_TOKENS = 1000
"""Default block length in tokens: with characters, about two paragraphs, far longer
than the range over which two models' per-character loss differences stay correlated
(words, names and sentences: tens of characters), yet short enough that a 17,000-token
test split still holds 17 blocks per resample (see :func:`default_block`)."""
MIN_BLOCKS = 10  # a short test split is cut into at least this many blocks
_CHUNK = 1 << 22  # random block starts drawn at once
COLUMNS = ["n_paired", "mean_diff", "t_statistic", "p_value", "mean_diff_bpc", "ci_low",
           "ci_high", "block", "verdict"]
"""A paired table's columns after ``group`` and the group columns."""


@dataclass(frozen=True)
class PairedSeeds:
    """Per-seed differences ``b - a`` over the seeds both sides have, and their paired
    t-test; ``sd``, ``t`` and ``p_value`` are undefined (NaN, None, None) below two
    seeds, and ``t`` and ``p_value`` also when every difference is the same."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    sd: float
    n: int
    t: float | None
    p_value: float | None


def paired_seeds(a: Mapping[int, float], b: Mapping[int, float]) -> PairedSeeds:
    """Paired t-test of ``b - a`` (seed -> metric value) over the seeds both map to a
    finite value: t = mean / (sd / sqrt(n)), two-sided p from Student's t with n - 1
    degrees of freedom (``scipy.stats.ttest_rel`` computes the same)."""
    seeds = tuple(sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s])))
    diffs = np.array([float(b[s]) - float(a[s]) for s in seeds], dtype=float)
    n = int(diffs.size)
    mean = float(diffs.mean()) if n else math.nan
    sd = float(diffs.std(ddof=1)) if n > 1 else math.nan
    t = p = None
    if n > 1 and sd > 0:
        t = mean / (sd / math.sqrt(n))
        p = float(2 * scipy_stats.t.sf(abs(t), df=n - 1))
    return PairedSeeds(seeds, tuple(diffs.tolist()), mean, sd, n, t, p)


@dataclass(frozen=True)
class Interval:
    """A bootstrap estimate of the mean of ``b - a`` in bits per token and its percentile
    interval, with how it was computed."""

    estimate: float
    low: float
    high: float
    confidence: float
    block: int
    resamples: int

    def verdict(self) -> str:
        """``better`` (``b`` lower: fewer bits), ``worse``, or ``not distinguishable``
        when the interval holds 0."""
        return "better" if self.high < 0 else "worse" if self.low > 0 else "not distinguishable"


def default_block(n: int) -> int:
    """The default block length for ``n`` test tokens: :data:`BLOCK_TOKENS`, or less for
    a split too short to hold :data:`MIN_BLOCKS` of them, never below ``n ** (1/3)`` (the
    rate at which an optimal block grows with the series)."""
    return max(1, min(BLOCK_TOKENS, max(n // MIN_BLOCKS, math.ceil(n ** (1 / 3)))))


def mean_over_seeds(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The per-token mean of several seeds' loss arrays of the same test tokens;
    ValueError when there are none or their lengths differ."""
    shapes = {np.shape(x) for x in arrays}
    if len(shapes) != 1 or len(min(shapes)) != 1:
        raise ValueError(f"mean_over_seeds needs 1-D arrays of one length, got {sorted(shapes)}")
    return np.mean(np.stack([np.asarray(x, dtype=float) for x in arrays]), axis=0)


def block_bootstrap(a: np.ndarray, b: np.ndarray, *, block: int, resamples: int = RESAMPLES,
                    confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of ``b - a`` (per-token losses in nats of the same test tokens) in bits per
    token, with a percentile interval from a circular moving-block bootstrap: each
    resample joins ``ceil(n / block)`` blocks of ``block`` consecutive positions, started
    uniformly at random and wrapping past the end, cut to ``n`` tokens. ``block=1`` is
    the iid bootstrap. Deterministic for a given ``seed``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or not a.size or not np.isfinite(b - a).all():
        raise ValueError(f"a and b must be finite 1-D arrays of one length, got {a.shape} "
                         f"and {b.shape}")
    block = int(check_number(block, name="block", integer=True, minimum=1))
    resamples = int(check_number(resamples, name="resamples", integer=True, minimum=1))
    confidence = float(check_number(confidence, name="confidence", above=0, below=1))
    d, block = b - a, min(block, a.size)
    means = _resample_means(d, block=block, resamples=resamples, rng=np.random.default_rng(seed))
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2]) * BITS
    return Interval(float(d.mean() * BITS), float(low), float(high), confidence, block, resamples)


def _resample_means(d: np.ndarray, *, block: int, resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Each resample's mean of ``d``: block sums come from one cumulative sum of ``d``
    wrapped around, so a resample costs ``ceil(n / block)`` look-ups."""
    n, centre = d.size, d.mean()
    d = d - centre  # a sum of centred values stays small: block sums keep their precision
    count = -(-n // block)
    tail = n - (count - 1) * block  # the last block is cut to what ``n`` leaves
    cumulative = np.concatenate([[0.0], np.cumsum(np.concatenate([d, d[:block - 1]]))])
    full = cumulative[block:block + n] - cumulative[:n]  # sum of the block starting at s
    last = cumulative[tail:tail + n] - cumulative[:n]
    means = np.empty(resamples)
    rows = max(1, _CHUNK // count)
    for start in range(0, resamples, rows):
        starts = rng.integers(0, n, size=(min(rows, resamples - start), count), dtype=np.int32)
        means[start:start + len(starts)] = (full[starts[:, :-1]].sum(axis=1)
                                            + last[starts[:, -1]]) / n
    return means + centre


@dataclass
class _Group:
    """One group's ok seeds: the metric per seed and the per-token test losses per seed."""

    key: tuple
    label: str
    counts: bool
    batch_size: Any
    values: dict[int, float] = field(default_factory=dict)
    losses: dict[int, np.ndarray] = field(default_factory=dict)

    def mean(self) -> float:
        return float(np.mean([v for v in self.values.values() if _finite(v)] or [math.nan]))


def _groups(records: Iterable[Record], *, metric: str, batch_size: Any = None,
            keys: Sequence[str] | None = None,
            defaults: Mapping[str, Any] | None = None) -> dict[tuple, _Group]:
    """The ok records by group (:func:`harness.results.stats.group_columns`); ``keys`` and
    ``defaults`` (setting -> value) line up two runs whose grids differ."""
    records = [r for r in records if r.ok]
    frame = results_frame(records, extra=["key"])
    for column in keys or ():
        if column not in frame:
            frame[column] = (defaults or {}).get(column[len(SETTING_PREFIX):])
    by_key = {r.key: r for r in records}
    keys = list(keys) if keys else group_columns(frame)
    found: dict[tuple, _Group] = {}
    for values, rows in iter_groups(frame, keys):
        members = [by_key[k] for k in rows["key"]]
        settings = {k[len(SETTING_PREFIX):]: v for k, v in values.items()
                    if k.startswith(SETTING_PREFIX) and v is not None}
        label = " / ".join([str(values["model"]), str(values["sampler"]),
                            *(f"{k}={v}" for k, v in settings.items())])
        group = _Group(tuple(values.values()), label,
                       any(_is_counts(r) for r in members),
                       settings.get("batch_size", batch_size))
        group.values.update((r.seed, r.metric(metric)) for r in members)
        group.losses.update((r.seed, x) for r in members if (x := _losses(r)) is not None)
        found[group.key] = group
    return found


def _is_counts(record: Record) -> bool:
    trained_by = record.extra.get("trained_by")
    return trained_by == "counts" if trained_by is not None else record.model == "ngram"


def _losses(record: Record) -> np.ndarray | None:
    try:
        return decode_losses(record.extra["test_nll"]) if "test_nll" in record.extra else None
    except ValueError as error:
        warnings.warn(f"{record.label}: skipping its test losses ({error})", stacklevel=4)
        return None


def _compare(group: _Group, base: _Group, *, confidence: float, block: int | None,
             resamples: int, seed: int) -> dict[str, Any]:
    """One row: ``group`` against ``base``, per seed and per token. Losses are averaged
    over the seeds both have, or each side's own seeds when they share none."""
    test = paired_seeds(base.values, group.values)
    row: dict[str, Any] = {"n_paired": test.n, "mean_diff": test.mean, "t_statistic": test.t,
                           "p_value": test.p_value, **dict.fromkeys(COLUMNS[4:8], math.nan)}
    shared = sorted(set(group.losses) & set(base.losses))
    mine, theirs = (shared, shared) if shared else (sorted(group.losses), sorted(base.losses))
    if not mine or not theirs:
        row["verdict"] = "no test losses"
        return row
    b = mean_over_seeds([group.losses[s] for s in mine])
    a = mean_over_seeds([base.losses[s] for s in theirs])
    if a.shape != b.shape or group.batch_size != base.batch_size:
        row["verdict"] = "not paired: other test positions (batch_size)"
        return row
    interval = block_bootstrap(a, b, block=block or default_block(a.size),
                               resamples=resamples, confidence=confidence, seed=seed)
    row.update(mean_diff_bpc=interval.estimate, ci_low=interval.low, ci_high=interval.high,
               block=interval.block, verdict=interval.verdict())
    return row


def _reference(groups: Mapping[tuple, _Group], reference: str | None, *, label: str,
               lower_is_better: bool) -> tuple[_Group, str]:
    """The reference group and why it is one (see :func:`paired_table`)."""
    if reference is not None:
        chosen = [g for g in groups.values() if g.label == reference] or \
            [g for g in groups.values() if g.key[0] == reference]
        if len(chosen) != 1:
            raise ConfigError(f"reference {reference!r} names {len(chosen)} groups; choose "
                              f"one of: {', '.join(g.label for g in groups.values())}")
        return chosen[0], "as chosen"
    measured = [g for g in groups.values() if _finite(g.mean())]
    counts = [g for g in measured if g.counts]
    sign = 1 if lower_is_better else -1
    best = min(counts or measured or list(groups.values()),
               key=lambda g: sign * g.mean() if _finite(g.mean()) else math.inf)
    return best, f"the {'count model' if counts else 'group'} with the best mean {label}"


def paired_table(records: Iterable[Record], *, metric: str = "test_bpc",
                 reference: str | None = None, confidence: float = 0.95,
                 block: int | None = None, resamples: int = RESAMPLES,
                 seed: int = 0) -> pd.DataFrame:
    """Every group of a run's ok records against a reference group: seeds paired, the
    mean per-seed difference of ``metric`` and its paired t-test, the bootstrap mean
    difference in bits per token (group - reference) with its interval, and the verdict.

    ``reference``: a group label (``gru / random``) or a model name with one group;
    default: the count model (``trained_by == "counts"``, else a model named ``ngram``)
    with the best mean ``metric``, else the best group. Columns: ``group``, the group
    columns, then :data:`COLUMNS`; ``attrs`` says how (reference, why, tokens, ...).
    Empty, without ``attrs``, when no record has test losses."""
    info, records = metric_info(metric), list(records)
    groups = _groups(records, metric=metric)
    keys = group_columns(results_frame([r for r in records if r.ok]))
    if not any(g.losses for g in groups.values()):
        return pd.DataFrame([], columns=["group", *keys, *COLUMNS])
    base, why = _reference(groups, reference, label=info.label,
                           lower_is_better=info.lower_is_better)
    rows = [{"group": g.label, **dict(zip(keys, g.key)),
             **_compare(g, base, confidence=confidence, block=block, resamples=resamples,
                        seed=seed)}
            for g in groups.values() if g is not base]
    table = pd.DataFrame(rows, columns=["group", *keys, *COLUMNS])
    table.attrs.update(reference=base.label, why=why, confidence=confidence,
                       resamples=resamples, metric=metric,
                       tokens=len(next(iter(base.losses.values()))) if base.losses else 0)
    return table


def paired_section(records: Iterable[Record], *, confidence: float = 0.95,
                   block: int | None = None, resamples: int = RESAMPLES) -> str:
    """The report's Markdown section "Paired comparison on the test split" (a heading,
    what the tests are, the table); '' for a run without test losses (d2l's task)."""
    table = paired_table(records, confidence=confidence, block=block, resamples=resamples)
    if not table.attrs:
        return ""
    lines = [f"## {TITLE}", "",
             f"Every group against the reference **{escape_markdown(table.attrs['reference'])}**"
             f" ({table.attrs['why']}), on the same {table.attrs['tokens']:,} scored test "
             "tokens. " + _method(table, base="the reference's"), ""]
    shown = markdown_table(_display(table)) if len(table) else "The run has no other group."
    return "\n".join([*lines, shown, ""])


def _method(table: pd.DataFrame, *, base: str) -> str:
    blocks = " or ".join(f"{int(b):,}" for b in sorted(set(table["block"].dropna()))) or "-"
    return (f"Δ bpc: the group's mean bits per token minus {base} (negative: the group is "
            f"better). p: a per-seed paired t-test (two-sided) of "
            f"{metric_info(table.attrs['metric']).label} over the seeds both have, for the "
            f"spread between training seeds. CI: a {table.attrs['confidence']:.0%} percentile "
            "interval of Δ bpc from a circular moving-block bootstrap over test positions "
            f"({table.attrs['resamples']:,} resamples, blocks of {blocks} tokens; losses "
            "averaged over the seeds both have), for the spread over test text: neighbouring "
            "characters' losses are correlated, so blocks are resampled, not single tokens. "
            "Verdict: better or worse when the interval excludes 0.")


def _display(table: pd.DataFrame) -> pd.DataFrame:
    number = lambda v, f: format(v, f) if _finite(v) else ""  # noqa: E731
    return pd.DataFrame({
        "group": table["group"], "seeds paired": table["n_paired"],
        "Δ bpc": [number(v, "+.4f") for v in table["mean_diff_bpc"]],
        "p (paired t)": [number(p, ".3g") for p in table["p_value"]],
        f"{table.attrs['confidence']:.0%} CI": [
            f"{lo:+.4f} to {hi:+.4f}" if _finite(lo) else ""
            for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "verdict": table["verdict"]}).astype(object)


@dataclass(frozen=True)
class PairedRuns:
    """Each group of run B against the same group of run A, the baseline: one row per
    group both have (``table``, as :func:`paired_table`'s), and the two runs' (run id,
    directory)."""

    runs: tuple[tuple[str, Path], ...]
    table: pd.DataFrame


def paired_runs(run_a: str | Path, run_b: str | Path, *, metric: str = "test_bpc",
                confidence: float = 0.95, block: int | None = None,
                resamples: int = RESAMPLES, seed: int = 0) -> PairedRuns:
    """Run B's groups against run A's, matched by (model, sampler, settings) as
    :func:`harness.results.compare.compare_runs` matches them (a setting only one run's
    grid varies takes the other run's recipe value). A one-line ConfigError when the runs
    differ in task, corpus sha1, split bounds or batch_size: their test losses are not of
    the same characters. The table has no rows when neither run has test losses."""
    stores = [RunStore.open(Path(p)) for p in (run_a, run_b)]
    manifests = [s.manifest() for s in stores]
    varied = set().union(*(m.settings.grid for m in manifests))
    terms = {"task": lambda s: s.task, "corpus sha1": lambda s: s.corpus.get("sha1"),
             "split bounds": lambda s: s.corpus.get("bounds"),
             "batch_size": lambda s: None if "batch_size" in varied
             else s.recipe.get("batch_size")}
    a, b = (m.settings for m in manifests)
    differ = [f"{name} (A {get(a)}, B {get(b)})" for name, get in terms.items()
              if get(a) != get(b)]
    if differ:
        raise ConfigError("cannot pair the test losses of runs that differ in "
                          + "; ".join(differ))
    records = [s.records() for s in stores]
    keys = [*BASE_GROUP, *sorted({f"{SETTING_PREFIX}{k}" for rs in records for r in rs
                                  if r.ok for k in r.settings})]
    sides = [_groups(rs, metric=metric, keys=keys, batch_size=m.settings.recipe.get("batch_size"),
                     defaults=m.settings.recipe) for rs, m in zip(records, manifests)]
    rows = [{"group": sides[1][key].label, **dict(zip(keys, key)),
             **_compare(sides[1][key], sides[0][key], confidence=confidence, block=block,
                        resamples=resamples, seed=seed)}
            for key in sorted(set(sides[0]) & set(sides[1]), key=str)
            if sides[0][key].losses or sides[1][key].losses]
    table = pd.DataFrame(rows, columns=["group", *keys, *COLUMNS])
    table.attrs.update(metric=metric, confidence=confidence, resamples=resamples)
    return PairedRuns(tuple((m.run_id, s.path) for m, s in zip(manifests, stores)), table)


def format_paired_runs(comparison: PairedRuns, fmt: str = "markdown") -> str:
    """The comparison as Markdown (a heading, a legend like ``harness compare``'s, the
    table; '' when no group has test losses), CSV, or JSON (runs, method, rows)."""
    table, labels = comparison.table, ("A", "B")
    if fmt == "json":
        return to_json({"runs": [{"label": label, "run_id": run_id, "path": str(path)}
                                 for label, (run_id, path) in zip(labels, comparison.runs)],
                        **table.attrs, "rows": table.to_dict(orient="records")}, indent=2)
    if fmt != "markdown":
        return render(table, fmt)  # CSV, or the unknown-format error
    if table.empty:
        return ""
    legend = [f"- **{label}**{' (baseline)' if label == 'A' else ''}: "
              f"{escape_markdown(run_id)} ({escape_markdown(path)})"
              for label, (run_id, path) in zip(labels, comparison.runs)]
    legend.append("- Each group of B against the same group of A, on the same scored test "
                  "tokens. " + _method(table, base="A's"))
    return "\n".join([f"## {TITLE}", "", *legend, "", markdown_table(_display(table))])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
