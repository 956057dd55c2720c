"""Compare runs side by side, from their run directories alone.

The first run is the baseline (``A``); every other run (``B``, ``C``, ...) is compared with
it, group by group, where a group is (model, sampler) plus any per-record settings. For
each metric the table gives both sides' mean ± std over ok seeds, the change (a difference
for perplexity, a ratio for tokens/sec) and, when both sides have at least
:data:`~harness.results.stats.MIN_SEEDS` ok seeds, Welch's t-test and its verdict at ``alpha``.

Runs trained on different corpora or with different recipes do not measure the same
thing: :func:`compare_runs` refuses them (:class:`IncomparableRuns`, naming every setting
that differs) unless ``force=True``, and a forced comparison carries the differences.
Runs made on different machines or code may measure the same thing differently: every
comparison also sets the runs' environments side by side (:mod:`harness.results.envdiff`)
and lists each key on which they differ.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.plan.recipe import Recipe
from harness.results.envdiff import EnvironmentDiff, environment_differences, unrecorded_text
from harness.results.frames import load_run
from harness.results.stats import (
    ALPHA,
    BASE_GROUP,
    METRICS,
    MIN_SEEDS,
    SETTING_PREFIX,
    TEST_NAME,
    Summary,
    iter_groups,
    not_ok_text,
    summarize,
    welch_test,
)
from harness.results.schema import Manifest
from harness.results.store import RunStore, to_json
from harness.metrics import metric as metric_info
from harness.results.tables import escape_markdown, markdown_table, mean_std, render

RECIPE_DEFAULTS = Recipe().to_dict()



class IncomparableRuns(ConfigError):
    """The runs differ in corpus or recipe, so their numbers do not measure the same thing."""


@dataclass(frozen=True)
class RunInfo:
    """One compared run: its label in the table (A, B, ...), id and directory."""

    label: str
    run_id: str
    path: Path


@dataclass(frozen=True)
class Comparison:
    """The aligned table (one row per group, metric and non-baseline run), the runs, the
    settings that differ (non-empty only for a forced comparison), and how the runs'
    environments differ."""

    runs: tuple[RunInfo, ...]
    table: pd.DataFrame
    differences: tuple[str, ...]
    alpha: float
    environment: EnvironmentDiff | None = None


EXECUTION_CHOICES = frozenset({"precision", "eval_every"})
"""Recipe fields that say how a run is executed or observed, not what is trained: like the
device, they may differ between compared runs (comparing them is often the point)."""


def grid_fields(manifest: Manifest) -> set[str]:
    """The recipe fields a run's ``--set`` grid varies (empty for a plain run)."""
    return set(manifest.settings.grid)


def comparable_settings(manifest: Manifest,
                        varied: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The settings that must agree for two runs to be comparable: the task, the corpus
    (sha1, vocabulary, token counts) and every recipe field but :data:`EXECUTION_CHOICES`,
    the run's ``--set`` grid and the fields in ``varied`` (another compared run's grid:
    those are part of the groups, see :func:`compare_runs`), as dotted names."""
    settings = manifest.settings
    varied = set(varied) | grid_fields(manifest)
    flat: dict[str, Any] = {"task": settings.task}
    flat.update({f"corpus.{k}": settings.corpus.get(k)
                 for k in ("sha1", "vocab_size", "train_tokens", "valid_tokens")})
    flat.update({f"recipe.{k}": v for k, v in sorted(settings.recipe.items())
                 if k not in EXECUTION_CHOICES and k not in varied})
    return flat


def setting_differences(manifests: Sequence[Manifest],
                        labels: Sequence[str]) -> list[str]:
    """Each comparable setting on which a run differs from the first, e.g.
    ``recipe.lr (A 1.0, B 2.0)``. A field any run's grid varies is not one of them."""
    varied = set().union(*map(grid_fields, manifests))
    flats = [comparable_settings(m, varied) for m in manifests]
    differences = []
    for name in sorted(set().union(*flats)):
        values = [flat.get(name) for flat in flats]
        if any(v != values[0] for v in values[1:]):
            shown = ", ".join(f"{label} {value}" for label, value in zip(labels, values))
            differences.append(f"{name} ({shown})")
    return differences


def compare_runs(paths: Sequence[str | Path], force: bool = False,
                 alpha: float = ALPHA) -> Comparison:
    """Compare the runs in ``paths`` (the first is the baseline).

    Raises :class:`ConfigError` for fewer than two runs, a path that is not a run
    directory or an ``alpha`` outside (0, 1), and :class:`IncomparableRuns` when corpus or
    recipe differ and ``force`` is false.
    """
    if len(paths) < 2:
        raise ConfigError("compare needs at least two run directories")
    if len(paths) > len(string.ascii_uppercase):
        raise ConfigError(f"compare takes at most {len(string.ascii_uppercase)} runs")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}")
    stores = [RunStore.open(Path(p)) for p in paths]
    manifests = [s.manifest() for s in stores]
    runs = tuple(RunInfo(label, m.run_id, s.path)
                 for label, s, m in zip(string.ascii_uppercase, stores, manifests))
    differences = setting_differences(manifests, [r.label for r in runs])
    if differences and not force:
        raise IncomparableRuns("runs differ in " + "; ".join(differences)
                               + "; use --force to compare them anyway")
    frames = [load_run(s.path) for s in stores]
    recipes = [m.settings.recipe for m in manifests]
    environment = environment_differences([m.environment for m in manifests],
                                          [r.label for r in runs])
    return Comparison(runs, _table(frames, runs, alpha, recipes), tuple(differences), alpha,
                      environment)


@dataclass(frozen=True)
class _Side:
    """One run's seeds of one group: the summary of a metric over ok seeds, and why
    there is none."""

    values: tuple[float, ...]
    summary: Summary
    n_ok: int
    n: int
    not_ok: str


def _table(frames: list[pd.DataFrame], runs: tuple[RunInfo, ...], alpha: float,
           recipes: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per group, metric and non-baseline run. A run that does not vary a setting
    another run's grid varies trained every combination at its recipe's value, so its
    records join the groups of that value (a plain fp32 run pairs with a grid's fp32
    point)."""
    settings = sorted({c for f in frames for c in f.columns if c.startswith(SETTING_PREFIX)})
    keys = [*BASE_GROUP, *settings]
    groups: list[dict[tuple, pd.DataFrame]] = []
    for frame, recipe in zip(frames, recipes):
        frame = frame.copy()
        for column in settings:
            if column not in frame:  # a run made before the field existed had its default
                field = column[len(SETTING_PREFIX):]
                frame[column] = recipe.get(field, RECIPE_DEFAULTS.get(field))
        groups.append({tuple(k.values()): g for k, g in iter_groups(frame, keys)})
    rows = []
    for key in sorted(set().union(*groups), key=_sort_key):
        for metric in METRICS:
            base = _side(groups[0].get(key), metric)
            for run, members in zip(runs[1:], groups[1:]):
                other = _side(members.get(key), metric)
                rows.append({**dict(zip(keys, key)), "metric": metric,
                             **_row(base, other, metric, run, runs[0], alpha)})
    columns = [*keys, "metric", "run", "run_id", "baseline_run_id",
               *(f"baseline_{c}" for c in ("mean", "std", "n_ok", "n", "not_ok")),
               "mean", "std", "n_ok", "n", "not_ok", "change", "change_kind", "p_value",
               "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _side(group: pd.DataFrame | None, metric: str) -> _Side | None:
    if group is None:
        return None
    ok = group[group["status"] == "ok"][metric].tolist()
    summary = summarize(ok)
    return _Side(tuple(v for v in ok if v is not None and math.isfinite(v)), summary,
                 len(ok), len(group), not_ok_text(group))


def _row(base: _Side | None, other: _Side | None, metric: str, run: RunInfo,
         baseline: RunInfo, alpha: float) -> dict[str, Any]:
    row: dict[str, Any] = {"run": run.label, "run_id": run.run_id,
                           "baseline_run_id": baseline.run_id}
    for prefix, side in (("baseline_", base), ("", other)):
        summary = side.summary if side else Summary(math.nan, math.nan, 0)
        row.update({f"{prefix}mean": summary.mean, f"{prefix}std": summary.std,
                    f"{prefix}n_ok": side.n_ok if side else 0, f"{prefix}n": side.n if side else 0,
                    f"{prefix}not_ok": side.not_ok if side else ""})
    ratio = metric_info(metric).change == "ratio"
    row["change_kind"] = "ratio" if ratio else "difference"
    row["change"], row["p_value"] = math.nan, math.nan
    if base is None or other is None:
        row["verdict"] = f"missing in {baseline.label if base is None else run.label}"
        return row
    if not base.n_ok or not other.n_ok:
        row["verdict"] = "no ok seed"
        return row
    if not base.summary.n or not other.summary.n:
        row["verdict"] = "not measured"
        return row
    a, b = base.summary.mean, other.summary.mean
    row["change"] = (b / a if a else math.nan) if ratio else b - a
    test = welch_test(base.values, other.values, MIN_SEEDS)
    row["p_value"] = test.p_value
    if test.reason:
        row["verdict"] = f"not tested: {test.reason}"
    elif test.significant(alpha):
        better = (b < a) == metric_info(metric).lower_is_better
        row["verdict"] = f"significant: {'better' if better else 'worse'}"
    else:
        row["verdict"] = "not significant"
    return row


def _sort_key(key: tuple) -> tuple:
    """Missing values last, numbers by value, other values by text."""
    return tuple((value is None, not isinstance(value, (int, float)),
                  value if isinstance(value, (int, float)) else 0, str(value)) for value in key)


def format_comparison(comparison: Comparison, fmt: str = "markdown") -> str:
    """The comparison as Markdown (a legend, the table, then the environment section),
    CSV (the table, with a ``forced_differences`` column when forced and an
    ``environment_differences`` column: ``none`` when the environments match) or JSON
    (runs, test, differences, environment, rows)."""
    table = comparison.table
    environment = comparison.environment
    if fmt == "json":
        return to_json({
            "runs": [{"label": r.label, "run_id": r.run_id, "path": str(r.path)}
                     for r in comparison.runs],
            "test": TEST_NAME, "alpha": comparison.alpha, "min_seeds": MIN_SEEDS,
            "forced": bool(comparison.differences),
            "differences": list(comparison.differences),
            **({"environment": environment.to_json()} if environment else {}),
            "rows": table.to_dict(orient="records"),
        }, indent=2)
    if fmt == "csv":
        if comparison.differences:
            table = table.assign(forced_differences="; ".join(comparison.differences))
        if environment is not None:
            table = table.assign(environment_differences=environment.summary())
        return render(table, "csv")
    if fmt != "markdown":
        return render(table, fmt)  # raises the unknown-format error
    return "\n".join([*_legend(comparison), "", render(table, "markdown", _display(comparison)),
                      *_environment_section(environment)])


def _environment_section(diff: EnvironmentDiff | None) -> list[str]:
    """Markdown: a heading, then a key-by-run table of the differences, or one line saying
    the environments match; and the keys some runs did not record."""
    if diff is None:
        return []
    lines = [""]
    unrecorded = unrecorded_text(diff)
    if diff.match:
        lines.append("**Environment**: the runs' environments match"
                     + (" in every key they all recorded." if unrecorded else "."))
    else:
        lines += ["**Environment**: the runs' environments differ in these keys.", ""]
        shown = pd.DataFrame([[key, *values] for key, values in diff.differences],
                             columns=["key", *diff.labels]).astype(object)
        lines.append(markdown_table(shown))
    if unrecorded:
        lines += ["", f"Not recorded (a run made by an older harness): "
                      f"{escape_markdown(unrecorded)}."]
    return lines


def _legend(comparison: Comparison) -> list[str]:
    lines = [f"- **{r.label}**{' (baseline)' if i == 0 else ''}: "
             f"{escape_markdown(r.run_id)} ({escape_markdown(r.path)})"
             for i, r in enumerate(comparison.runs)]
    if comparison.differences:
        lines.append("- **Forced comparison**: these runs differ in "
                     + escape_markdown("; ".join(comparison.differences))
                     + ", so their numbers do not measure the same thing.")
    lines.append(f"- Cells: mean ± std over ok seeds (ok/recorded seeds). Change: difference "
                 f"for perplexity, ratio for tokens/sec. p: {TEST_NAME}, when both sides have "
                 f">= {MIN_SEEDS} ok seeds; significant when p < {comparison.alpha:g}.")
    return lines


def _display(comparison: Comparison) -> pd.DataFrame:
    table = comparison.table
    keys = [c for c in table.columns if c in BASE_GROUP or c.startswith(SETTING_PREFIX)]
    base_label = comparison.runs[0].label
    shown = table[[*keys, "metric"]].copy()
    shown["metric"] = [metric_info(name).label for name in table["metric"]]
    several = len(comparison.runs) > 2
    if several:
        shown["run"] = table["run"]
    shown[base_label] = [_cell(r, "baseline_") for _, r in table.iterrows()]
    shown["value" if several else comparison.runs[1].label] = [
        _cell(r, "") for _, r in table.iterrows()]
    shown["change"] = [_change(r) for _, r in table.iterrows()]
    shown["p"] = [("" if math.isnan(p) else f"{p:.3g}") for p in table["p_value"]]
    shown["verdict"] = table["verdict"]
    return shown.astype(object)


def _cell(row: pd.Series, prefix: str) -> str:
    if row[f"{prefix}n"] == 0:
        return "missing"
    counts = f"({row[f'{prefix}n_ok']}/{row[f'{prefix}n']})"
    value = mean_std(row[f"{prefix}mean"], row[f"{prefix}std"], metric_info(row["metric"]).digits)
    if value:
        return f"{value} {counts}"
    if row[f"{prefix}n_ok"] == 0:
        return f"no ok seed {counts}: {row[f'{prefix}not_ok']}"
    return f"not measured {counts}"


def _change(row: pd.Series) -> str:
    change = row["change"]
    if math.isnan(change):
        return ""
    if row["change_kind"] == "ratio":
        return f"×{change:.3f}"
    return f"{change:+.{max(metric_info(row['metric']).digits, 3)}f}"
