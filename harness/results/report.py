"""report.md and its charts, derived from a run directory alone.

``harness run`` writes the report through :func:`write_report` when it finishes, and
``harness report RUN`` calls the same function, so a report can be regenerated at any time
from the stored manifest, records and curves. Regenerating is idempotent: report.md and
the PNG charts in ``plots/`` come out byte-identical (nothing in them depends on the clock
or the machine that renders them, beyond the installed matplotlib version).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.names import safe_name
from harness.results.plots import Bar, Curve, curves_png, throughput_png
from harness.data.taskfile import run_references
from harness.metrics import metric
from harness.plan.recipe import Recipe
from harness.results import heldout_report as heldout
from harness.results.frames import (efficiency_notes, format_table, group_label, group_members,
                                    results_frame)
from harness.results.envdiff import flat_environment
from harness.results.literature import literature_section
from harness.results.paired import paired_section
from harness.results.stats import SETTING_PREFIX, aggregate, group_columns
from harness.results.schema import Manifest, Record
from harness.results.store import RunStore
from harness.results.tables import escape_markdown, format_summary, markdown_table, mean_std

CURVE_POINTS = 10
"""How many epochs of each curve the report's table shows (evenly spaced, always the last)."""

PLOTS = "plots"
"""The folder of the run directory that holds the report's charts."""

THROUGHPUT_PNG = "tokens_per_sec.png"
CHART_NAME = 100
"""The longest group label a chart's file name holds."""


@dataclass
class Report:
    """A rendered report: the Markdown and the charts it links (file name to PNG bytes)."""

    markdown: str
    charts: dict[str, bytes] = field(default_factory=dict)


def build_report(store: RunStore) -> Report:
    """Render the report of ``store``: Markdown sections and their PNG charts. A curve
    file that cannot be read is left out with a warning and a note in the report."""
    manifest = store.manifest()
    records = store.records()
    frame = results_frame(records, extra=["key"], manifest=manifest)
    summary = aggregate(frame) if records else None
    curves, skipped = _read_curves(store, records)
    held_out = heldout.is_heldout(manifest)
    charts: dict[str, bytes] = {}
    parts = [f"# Run {escape_markdown(manifest.run_id)}", ""]
    parts += _settings(manifest)
    if held_out and summary is not None:
        parts += heldout.results_lines(frame, summary, records=records,
                                       manifest=manifest)
    else:
        parts += _results(frame, summary, manifest)
    if held_out:
        parts += heldout.target_lines(manifest, frame, summary)
        paired = paired_section(records)
        parts += [paired.rstrip("\n"), ""] if paired else []
        parts += literature_section(manifest, summary)
    parts += _not_ok(records)
    parts += _published(manifest, summary)
    parts += _generated(records)
    if held_out:
        parts += heldout.validation_lines(curves, frame, summary=summary, charts=charts,
                                          target=_target_bpc(manifest.settings.recipe))
    parts += _charts(curves, frame, summary, charts, held_out)
    parts += _curves(curves, records, skipped, held_out)
    return Report("\n".join(parts).rstrip() + "\n", charts)


def _target_bpc(recipe: Any) -> float | None:
    """The run's target in bits per token, for the validation charts (None without one)."""
    name, value = recipe.get("target_metric"), recipe.get("target_value")
    if not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(value) if name == "valid_bpc" else math.log2(value) if name == "valid_ppl" \
        else None


def _read_curves(store: RunStore, records: list[Record]
                 ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Each record's curve (key to rows), and why each unreadable curve file was skipped."""
    curves: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    for record in records:
        try:
            curves[record.key] = store.curve(record.key)
        except ConfigError as error:
            warnings.warn(f"skipping a curve: {error}", stacklevel=3)
            skipped.append(str(error).replace(f"{store.path}{os.sep}", "", 1))  # relative
    return curves, skipped


def render_report(store: RunStore) -> str:
    """The Markdown report: settings, environment, results, generated text, charts, curves."""
    return build_report(store).markdown


def report(path: str | Path) -> Path:
    """Regenerate the report and charts of the run directory ``path``; returns report.md."""
    return write_report(RunStore.open(Path(path)))


def write_report(store: RunStore) -> Path:
    """Render the report and write its charts and ``report.md`` atomically."""
    report = build_report(store)
    store.write_files(PLOTS, report.charts)
    return store.write_text("report.md", report.markdown)


def _kv_table(pairs: dict[str, Any]) -> str:
    frame = pd.DataFrame({"setting": list(pairs), "value": [str(v) for v in pairs.values()]})
    return markdown_table(frame)


def _settings(manifest: Manifest) -> list[str]:
    settings = manifest.settings
    env = manifest.environment
    corpus = settings.corpus
    run = {
        "status": manifest.status,
        "command": manifest.command,
        "task": settings.task,
        "models": ", ".join(settings.models),
        "samplers": ", ".join(settings.samplers),
        "seeds": ", ".join(str(s) for s in settings.seeds),
        "corpus sha1": corpus.get("sha1"),
        "vocabulary": corpus.get("vocab_size"),
    }
    if heldout.is_heldout(manifest):
        run.update(heldout.settings_rows(manifest))
    else:
        run.update({
            "train / validation tokens": f"{corpus.get('train_tokens')} / "
                                         f"{corpus.get('valid_tokens')}",
            **dict(settings.recipe),
            **{k: f"{', '.join(map(str, v))} (--set: one group each)"
               for k, v in settings.grid.items()}})
    listed = env.get("plugins")
    plugins = ", ".join(f"{p.get('plugin')} ({p.get('distribution')} {p.get('version')})"
                        if isinstance(p, dict) else str(p)
                        for p in (listed if isinstance(listed, list) else [listed or ""]))
    # nested provenance (harness_source, torch_build, gpu...) as dotted keys, lists joined
    environment = flat_environment({k: v for k, v in env.items()
                                    if k not in ("plugins", "plugin_failures")})
    environment["plugins"] = plugins
    return ["## Settings", "", _kv_table(run), "", "## Environment", "",
            _kv_table(environment), ""]


def _results(frame: pd.DataFrame, summary: pd.DataFrame | None,
             manifest: Manifest | None = None) -> list[str]:
    lines = ["## Results", ""]
    if summary is None:
        return lines + ["No combination has finished.", ""]
    lines += [
        "Mean ± sample standard deviation (n - 1) over the seeds whose status is `ok`; "
        "`seeds ok` is how many of the recorded seeds are ok. Other statuses are never "
        "averaged in: `not ok` lists them with their seeds. Perplexity is the last epoch's; "
        "tokens/sec the median epoch after the first.",
        "",
        format_summary(summary),
        "",
        *efficiency_notes(summary, manifest),
        "### Per seed",
        "",
        format_table(frame.drop(columns="key")),
        "",
    ]
    return lines


def _not_ok(records: list[Record]) -> list[str]:
    bad = [r for r in records if not r.ok]
    if not bad:
        return []
    rows = pd.DataFrame([{"model": r.model, "sampler": r.sampler,
                          **_settings_cell(r, records), "seed": r.seed,
                          "status": r.status, "error": r.error or ""}
                         for r in bad])
    rows = rows.sort_values(["model", "sampler", "seed"], kind="stable")
    return ["## Not ok", "",
            "Combinations that did not finish normally (tracebacks in `errors/`).", "",
            markdown_table(rows.astype(object)), ""]


def _published(manifest: Manifest, summary: pd.DataFrame | None) -> list[str]:
    """Each group beside the reference numbers its task cites for the same model, sampler,
    corpus and recipe (:mod:`harness.data.references`), read from the manifest."""
    lines = ["## Reference numbers", ""]
    settings = manifest.settings
    task, sha1 = settings.task, settings.corpus.get("sha1")
    try:
        references = run_references(manifest.extra.get("references"), task, sha1)
    except ValueError as error:
        return lines + [f"The run's reference numbers cannot be read ({error}).", ""]
    # As a manifest stores them (JSON: lists, not tuples); a field an older manifest lacks
    # was added to the recipe after that run, which ran with its default.
    defaults = json.loads(json.dumps(Recipe().to_dict()))
    rows = []
    for _, group in (summary.iterrows() if summary is not None else ()):
        recipe = {**defaults, **settings.recipe, **_group_settings(group)}
        for ref in references.matching(group["model"], group["sampler"], task=task,
                                       corpus_sha1=sha1, recipe=recipe, defaults=defaults):
            shown = metric(ref.metric)
            mean = group.get(f"{ref.metric}_mean")
            ours = mean_std(mean, group.get(f"{ref.metric}_std"), shown.digits)
            rows.append({
                **{k: group[k] for k in group_columns(summary)},
                "hiddens": recipe["num_hiddens"], "layers": recipe["num_layers"],
                "lr": recipe["lr"],
                "metric": shown.label,
                "ours": ours or ("no ok seed" if f"{ref.metric}_mean" in group
                                 else "not measured"),
                "ours, rounded": ref.format(mean) if ours else "",
                "reference": ref.text(),
                "in range": ("yes" if ref.contains(mean) else "no") if ours else "",
                "source": ref.source,
            })
    if not rows:
        return lines + [
            "A reference number (a task file's `[[reference]]`) holds for one model, sampler, "
            "corpus and recipe; no group of this run has those settings.", ""]
    return lines + [
        "Each group beside the number its task file cites for the same model, sampler, corpus "
        "and recipe (`[[reference]]`, with its source). Ours is the mean over ok seeds, "
        "rounded as the source prints it, and is in range when it lies within the "
        "reference's range, ends included.", "",
        markdown_table(pd.DataFrame(rows).astype(object)), ""]


def _group_settings(group: pd.Series) -> dict[str, Any]:
    return {k[len(SETTING_PREFIX):]: v for k, v in group.items()
            if k.startswith(SETTING_PREFIX) and pd.notna(v)}


def _settings_cell(record: Record, records: list[Record]) -> dict[str, str]:
    """A ``settings`` column (``lr=0.5, num_hiddens=256``) for tables of records, when any
    record of the run has ``--set`` settings."""
    if not any(r.settings for r in records):
        return {}
    return {"settings": ", ".join(f"{k}={v}" for k, v in record.settings.items())}


def _generated(records: list[Record]) -> list[str]:
    lines = ["## Generated text", "", "Greedy continuations after training (text escaped).", ""]
    rows = [
        {"model": r.model, "sampler": r.sampler, **_settings_cell(r, records),
         "seed": r.seed, "prefix": prefix, "text": text}
        for r in records for prefix, text in r.generated.items()
    ]
    if not rows:
        return lines + ["No generated text.", ""]
    frame = pd.DataFrame(rows).sort_values(["model", "sampler", "seed"], kind="stable")
    return lines + [markdown_table(frame.astype(object)), ""]


def _charts(stored: dict[str, list[dict[str, Any]]], frame: pd.DataFrame,
            summary: pd.DataFrame | None, charts: dict[str, bytes],
            held_out: bool = False) -> list[str]:
    lines = ["## Charts", ""]
    if summary is None:
        return lines + ["No combination has finished.", ""]
    keys = group_columns(summary)
    labels = [group_label(row, keys) for _, row in summary.iterrows()]
    bars = []
    for label, (_, row) in zip(labels, summary.iterrows()):
        seeds = group_members(frame, row, keys)
        ok = seeds[seeds["status"] == "ok"]["tokens_per_sec"]
        bars.append(Bar(label, row["tokens_per_sec_mean"], row["tokens_per_sec_std"],
                        tuple(ok.tolist())))
    charts[THROUGHPUT_PNG] = throughput_png("Training throughput", bars)
    lines += ["### Tokens/sec", "", f"![tokens/sec by combination]({PLOTS}/{THROUGHPUT_PNG})",
              ""]
    if held_out:
        return lines + heldout.bpc_chart_lines(stored, frame, summary=summary, charts=charts)
    lines += ["### Perplexity by epoch", "",
              "Training perplexity (solid) and validation perplexity (dashed, where measured), "
              "one colour per seed, log scale.", ""]
    for index, (label, (_, row)) in enumerate(zip(labels, summary.iterrows()), start=1):
        seeds = group_members(frame, row, keys)
        curves = [_curve(stored, record) for _, record in seeds.iterrows()]
        curves = [c for c in curves if c is not None]
        lines += [f"#### {escape_markdown(label)}", ""]
        if not curves:
            lines += [f"No curve was recorded ({row['not_ok'] or 'no epoch finished'}).", ""]
            continue
        name = f"curves-{index:02d}-{safe_name(label, CHART_NAME)}.png"
        charts[name] = curves_png(label, curves)
        lines += [f"![perplexity by epoch, {escape_markdown(label)}]({PLOTS}/{name})", ""]
    return lines


def _curve(stored: dict[str, list[dict[str, Any]]], record: pd.Series) -> Curve | None:
    points = stored.get(record["key"])
    if not points:
        return None
    return Curve(f"seed {record['seed']}", [p["epoch"] for p in points],
                 [p.get("train_ppl") for p in points], [p.get("valid_ppl") for p in points])


def _curves(stored: dict[str, list[dict[str, Any]]], records: list[Record],
            skipped: list[str], held_out: bool = False) -> list[str]:
    lines = ["## Training curves", ""]
    if not held_out:
        lines += ["Training perplexity by epoch (validation perplexity where it was measured).",
                  ""]
    lines += [f"Skipped a curve file that cannot be read: {escape_markdown(why)}"
              for why in skipped] + ([""] if skipped else [])
    if held_out:
        return lines + heldout.curve_table_lines(stored, records)
    columns: dict[str, pd.Series] = {}
    for record in records:
        curve = stored.get(record.key)
        if not curve:
            continue
        frame = pd.DataFrame(curve).set_index("epoch")
        label = escape_markdown(record.label)
        columns[f"{label} train"] = frame.get("train_ppl", pd.Series(None, frame.index, float))
        if "valid_ppl" in frame and frame["valid_ppl"].notna().any():
            columns[f"{label} valid"] = frame["valid_ppl"]
    if not columns:
        return lines + ["No curves.", ""]
    table = pd.DataFrame(columns)
    last = int(table.index.max())
    step = max(1, last // CURVE_POINTS)
    shown = sorted({e for e in table.index if e == 1 or e % step == 0 or e == last})
    shown_table = table.loc[shown].astype(object).where(table.loc[shown].notna(), None)
    return lines + [shown_table.to_markdown(floatfmt=".3f", missingval=""), ""]
