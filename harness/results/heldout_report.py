"""The report's sections for a task with fixed splits (a held-out run): settings, results
with parameters and the count-model baseline, time to target, and validation curves.

:mod:`harness.results.report` calls these when the manifest's corpus has a test split;
d2l's task keeps its own sections there, unchanged. Everything here is derived from the
manifest, records and curves alone, so the report regenerates identically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics import metric
from harness.names import safe_name
from harness.results.frames import efficiency_notes, format_table, group_label, group_members
from harness.results.plots import Band, TokenCurve, bpc_png, overlay_png
from harness.results.schema import Manifest, Record
from harness.results.stats import SETTING_PREFIX, group_columns, summarize
from harness.results.tables import count_text, escape_markdown, format_summary, markdown_table

PLOTS = "plots"
OVERLAY_TOKENS = "overlay-valid_bpc-tokens.png"
OVERLAY_SECONDS = "overlay-valid_bpc-seconds.png"
CURVE_ROWS = 10
"""How many validations of each curve the report's table shows (evenly spaced)."""
UNUSED = ("max_tokens", "valid_tokens", "eval_every")
"""Recipe fields a task with splits does not read (its splits and ``eval_tokens`` decide)."""
BUDGET_FIELDS = (("budget_tokens", "tokens"), ("budget_steps", "steps"),
                 ("budget_seconds", "training seconds"), ("epochs", "epochs"))
TARGET_FIELDS = ("target_metric", "target_value", "stop_at_target")
COUNTS = "counts"
"""A record's ``trained_by`` when its model was fitted by counting (an n-gram model)."""


def is_heldout(manifest: Manifest) -> bool:
    """Whether the run's task has fixed train/valid/test splits (its corpus has a test)."""
    corpus = manifest.settings.corpus
    return corpus.get("bounds") is not None or corpus.get("test_tokens") is not None


def settings_rows(manifest: Manifest) -> dict[str, Any]:
    """The Settings rows of the splits and the recipe: token counts and boundaries, the
    budget and target in words, then the other recipe fields (``--set`` ones say so)."""
    settings = manifest.settings
    corpus, recipe, grid = settings.corpus, dict(settings.recipe), settings.grid
    bounds = corpus.get("bounds")
    rows: dict[str, Any] = {
        "train / validation / test tokens": " / ".join(
            str(corpus.get(k)) for k in ("train_tokens", "valid_tokens", "test_tokens")),
    }
    if isinstance(bounds, list) and len(bounds) == 3:
        rows["split boundaries (token offsets)"] = (
            f"train 0 to {bounds[0]}, validation {bounds[0]} to {bounds[1]}, "
            f"test {bounds[1]} to {bounds[2]}")
    budgets = [f"{_plain(recipe[name])} {unit}" for name, unit in BUDGET_FIELDS
               if name not in grid and recipe.get(name)]
    rows["budget"] = ", ".join(budgets) + " (training stops at the first reached)" \
        if budgets else "none"
    if not any(name in grid for name in TARGET_FIELDS):
        rows["target"] = target_text(recipe) or "none"
    shown = {**{k: v for k, v in recipe.items() if k not in UNUSED and k not in TARGET_FIELDS
                and k not in dict(BUDGET_FIELDS)},
             **{k: recipe[k] for k in [*dict(BUDGET_FIELDS), *TARGET_FIELDS]
                if k in grid and k in recipe}}
    return {**rows, **shown, **{k: f"{', '.join(map(str, v))} (--set: one group each)"
                                for k, v in grid.items()}}


def target_text(recipe: Mapping[str, Any]) -> str:
    """``valid_bpc ≤ 3 (training stops there)``; '' for a recipe without a target."""
    name, value = recipe.get("target_metric"), recipe.get("target_value")
    if not name or not isinstance(value, (int, float)):
        return ""
    then = "training stops there" if recipe.get("stop_at_target") else "training goes on"
    return f"{name} ≤ {value:g} ({then})"


def results_lines(frame: pd.DataFrame, summary: pd.DataFrame, *, records: Sequence[Record],
                  manifest: Manifest | None = None) -> list[str]:
    """The Results section: per group with parameters (and FLOPs per token, FLOP/s and %
    of the ``manifest``'s peak when recorded), the count-model baseline, and the per-seed
    table."""
    keys = group_columns(summary)
    by_key = {r.key: r for r in records}
    members = [[by_key[k] for k in group_members(frame, row, keys)["key"] if k in by_key]
               for _, row in summary.iterrows()]
    details = {"params": [count_text([r.num_params for r in rs]) for rs in members]}
    return [
        "## Results", "",
        "Mean ± sample standard deviation (n - 1) over the seeds whose status is `ok`; "
        "`seeds ok` is how many of the recorded seeds are ok. Other statuses are never "
        "averaged in: `not ok` lists them with their seeds. Validation bpc and perplexity "
        "are the best validation's, test bpc and perplexity are scored once with that "
        "state, train bpc is over the tokens since the last validation; tokens/sec is all "
        "training tokens over the training seconds (validation excluded). `params`: "
        "trainable parameters.", "",
        format_summary(summary, details=details), "",
        *efficiency_notes(summary, manifest),
        *_baseline(summary, members, [group_label(row, keys) for _, row in summary.iterrows()]),
        "### Per seed", "",
        format_table(frame.drop(columns="key")), ""]


def is_count_model(record: Record) -> bool:
    """Whether ``record``'s model was fitted by counting (``trained_by`` is ``counts``;
    a record without ``trained_by``: whether its model is ``ngram``)."""
    if "trained_by" in record.extra:
        return record.extra["trained_by"] == COUNTS
    return record.model == "ngram"


def _baseline(summary: pd.DataFrame, members: list[list[Record]],
              labels: list[str]) -> list[str]:
    means = [float(v) for v in summary["test_bpc_mean"]]
    counted = [i for i, rs in enumerate(members) if any(is_count_model(r) for r in rs)]
    scored = [i for i in counted if math.isfinite(means[i])]
    if not scored:
        why = " (its count model measured no test bpc)" if counted else ""
        return [f"**Baseline:** no count-model baseline in this run{why}.", ""]
    best = min(scored, key=lambda i: means[i])
    lines = [f"**Baseline:** {escape_markdown(labels[best])}, the best count model, "
             f"{means[best]:.3f} test bpc (mean over ok seeds).", ""]
    for i, label in enumerate(labels):
        if i == best:
            continue
        name = escape_markdown(label)
        if not math.isfinite(means[i]):
            lines.append(f"- {name} has no test bpc (no ok seed), so it cannot be compared.")
            continue
        below = "is below" if means[i] < means[best] else "is not below"
        lines.append(f"- {name}: its mean test bpc, {means[i]:.3f}, {below} the baseline "
                     f"({means[best]:.3f}).")
    return lines + ([""] if len(lines) > 2 else [])


def group_targets(manifest: Manifest, summary: pd.DataFrame | None) -> list[str]:
    """Each group's target (its ``--set`` settings over the recipe), as text."""
    recipe = dict(manifest.settings.recipe)
    if summary is None:
        return []
    return [target_text({**recipe, **{k[len(SETTING_PREFIX):]: v for k, v in row.items()
                                      if k.startswith(SETTING_PREFIX) and pd.notna(v)}})
            for _, row in summary.iterrows()]


def target_lines(manifest: Manifest, frame: pd.DataFrame,
                 summary: pd.DataFrame | None) -> list[str]:
    """The Time to target section, when the recipe (or a ``--set`` group) has a target."""
    run_target = target_text(manifest.settings.recipe)
    targets = group_targets(manifest, summary)
    if not run_target and not any(targets):
        return []
    lines = ["## Time to target", ""]
    if summary is None:
        return lines + [f"Target: {run_target}. No combination has finished.", ""]
    one = len(set(targets)) == 1
    lines += [
        (f"Target: {targets[0] or 'none'}. " if one else "Targets differ by group (`--set`). ")
        + "A seed reaches it at its first validation at or below the value; `reached` counts "
        "the ok seeds that did, of the group's ok seeds. Tokens and seconds (training "
        "seconds, validation excluded) are the mean ± sample standard deviation over the "
        "seeds that reached it.", ""]
    keys = group_columns(summary)
    rows = []
    for target, (_, row) in zip(targets, summary.iterrows()):
        ok = group_members(frame, row, keys)
        ok = ok[ok["status"] == "ok"]
        reached = ok[ok["tokens_to_target"].notna()]
        cells = {k: row[k] for k in keys}
        if not one:
            cells["target"] = target or "none"
        cells["reached"] = f"{len(reached)}/{len(ok)}"
        for name in ("tokens_to_target", "seconds_to_target"):
            spread = summarize(reached[name].tolist())
            cells[metric(name).label] = _mean_sd(spread.mean, spread.std, metric(name).digits)
        rows.append(cells)
    return lines + [markdown_table(pd.DataFrame(rows).astype(object)), ""]


def _mean_sd(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "not reached"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def validation_lines(stored: Mapping[str, list[dict[str, Any]]], frame: pd.DataFrame, *,
                     summary: pd.DataFrame | None, charts: dict[str, bytes],
                     target: float | None) -> list[str]:
    """The Validation curves section and its two overlay charts (added to ``charts``)."""
    lines = ["## Validation curves", ""]
    if summary is None:
        return lines + ["No combination has finished.", ""]
    keys = group_columns(summary)
    lines += [
        "Validation bpc against training tokens and against training seconds (validation "
        "excluded), one line per group: the mean over its ok seeds, shaded from the lowest "
        "to the highest seed. Each seed is interpolated linearly onto the points where any "
        "seed validated, within the range every seed covers. A group whose seeds each "
        "validated once (a count model) is a dot with bars spanning its seeds. Dotted: the "
        "target.", ""]
    for axis, name, xlabel in (("tokens", OVERLAY_TOKENS, "training tokens"),
                               ("seconds", OVERLAY_SECONDS, "training seconds")):
        bands, left_out = [], []
        for _, row in summary.iterrows():
            label = group_label(row, keys)
            ok = group_members(frame, row, keys)
            seeds = [_points(stored.get(k) or [], axis) for k in ok[ok["status"] == "ok"]["key"]]
            band = overlay_band(label, [s for s in seeds if s])
            if band is None:
                left_out.append(escape_markdown(label))
            else:
                bands.append(band)
        charts[name] = overlay_png(f"validation bpc by {xlabel}", bands, xlabel=xlabel,
                                   target=target)
        lines += [f"![validation bpc by {xlabel}]({PLOTS}/{name})", ""]
        if left_out:
            lines += [f"Not on the {axis} chart (no ok seed with a validation, or seeds whose "
                      f"{axis} ranges do not overlap): {', '.join(left_out)}.", ""]
    return lines


def _points(curve: list[dict[str, Any]], axis: str) -> list[tuple[float, float]]:
    points = [(row.get(axis), row.get("valid_bpc")) for row in curve]
    return [(float(x), float(y)) for x, y in points if _finite(x) and _finite(y)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def overlay_band(label: str, seeds: Sequence[Sequence[tuple[float, float]]]) -> Band | None:
    """The mean and range over ``seeds`` (each a list of (x, y) points, x increasing),
    each interpolated linearly onto every x any seed has within the range all cover; one
    point per seed: their mean x and y with the spans; None without seeds or overlap."""
    seeds = [sorted(s) for s in seeds if s]
    if not seeds:
        return None
    if all(len(s) == 1 for s in seeds):
        xs, ys = [s[0][0] for s in seeds], [s[0][1] for s in seeds]
        return Band(label, (float(np.mean(xs)),), (float(np.mean(ys)),), (min(ys),),
                    (max(ys),), (min(xs), max(xs)))
    start, end = max(s[0][0] for s in seeds), min(s[-1][0] for s in seeds)
    grid = sorted({x for s in seeds for x, _ in s if start <= x <= end})
    if not grid:
        return None
    values = np.array([np.interp(grid, [x for x, _ in s], [y for _, y in s]) for s in seeds])
    return Band(label, tuple(grid), tuple(values.mean(axis=0).tolist()),
                tuple(values.min(axis=0).tolist()), tuple(values.max(axis=0).tolist()))


def bpc_chart_lines(stored: Mapping[str, list[dict[str, Any]]], frame: pd.DataFrame, *,
                    summary: pd.DataFrame, charts: dict[str, bytes]) -> list[str]:
    """Each group's chart of train and valid bpc against training tokens, one colour a seed."""
    keys = group_columns(summary)
    lines = ["### Bits per token by training tokens", "",
             "Training bpc since the previous validation (solid) and validation bpc "
             "(dashed), at each validation, one colour per seed.", ""]
    for index, (_, row) in enumerate(summary.iterrows(), start=1):
        label = group_label(row, keys)
        curves = []
        for _, seed in group_members(frame, row, keys).iterrows():
            rows = stored.get(seed["key"]) or []
            if rows:
                curves.append(TokenCurve(f"seed {seed['seed']}", [r.get("tokens") for r in rows],
                                         [r.get("train_bpc") for r in rows],
                                         [r.get("valid_bpc") for r in rows]))
        lines += [f"#### {escape_markdown(label)}", ""]
        if not curves:
            lines += [f"No curve was recorded ({row['not_ok'] or 'no validation ran'}).", ""]
            continue
        name = f"bpc-{index:02d}-{safe_name(label, 100)}.png"
        charts[name] = bpc_png(label, curves)
        lines += [f"![bits per token by training tokens, {escape_markdown(label)}]"
                  f"({PLOTS}/{name})", ""]
    return lines


def curve_table_lines(stored: Mapping[str, list[dict[str, Any]]],
                      records: Sequence[Record]) -> list[str]:
    """The Training curves table: up to :data:`CURVE_ROWS` validations per combination."""
    lines = ["Each combination's validations (at most 10, evenly spaced, always the first "
             "and last): training tokens and seconds (validation excluded) so far, the "
             "learning rate, training bpc since the previous validation and validation bpc.",
             ""]
    rows = []
    for record in sorted(records, key=lambda r: (r.model, r.sampler,
                                                 sorted(map(str, r.settings.items())), r.seed)):
        curve = stored.get(record.key) or []
        count = min(len(curve), CURVE_ROWS)
        picked = sorted({round(i * (len(curve) - 1) / max(1, count - 1)) for i in range(count)})
        rows += [{"combination": record.label, "epoch": curve[i].get("epoch"),
                  "tokens": curve[i].get("tokens"), "seconds": curve[i].get("seconds"),
                  "lr": curve[i].get("lr"), "train bpc": curve[i].get("train_bpc"),
                  "valid bpc": curve[i].get("valid_bpc")} for i in picked]
    if not rows:
        return lines + ["No curves.", ""]
    table = pd.DataFrame(rows, dtype=object).astype(  # epoch and tokens stay whole numbers
        {"seconds": float, "lr": float, "train bpc": float, "valid bpc": float})
    return lines + [markdown_table(table, floatfmt=["g", "g", "g", ".1f", ".3g", ".3f", ".3f"]),
                    ""]


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
