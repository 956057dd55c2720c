"""Results as pandas DataFrames, one row per record, read from run directories only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from harness.metrics import D2L_NAMES, METRICS, NAMES
from harness.results import efficiency
from harness.results.schema import Manifest, Record
from harness.results.stats import SETTING_PREFIX, aggregate
from harness.results.store import RunStore
from harness.results.tables import escape_markdown, markdown_table

IDENTITY = ["model", "sampler", "seed", "status"]
DETAILS = ["wall_seconds", "num_params"]
EFFICIENCY = list(efficiency.COLUMNS)
COLUMNS = [*IDENTITY, *NAMES, *DETAILS, *EFFICIENCY]
FLOAT_FORMATS = {**{m.name: f".{m.digits}f" for m in METRICS}, "wall_seconds": ".1f",
                 "percent_of_peak": ".3g"}
SHOWN_EFFICIENCY = {"flops_per_sec": "FLOP/s", "percent_of_peak": "% of peak"}
"""The efficiency columns the per-seed Markdown table shows, and their headings (CSV and
JSON have them all, under their names)."""


def results_frame(records: Iterable[Record], extra: Sequence[str] = (),
                  manifest: Manifest | None = None) -> pd.DataFrame:
    """One row per record in the columns of :data:`COLUMNS` (missing numbers NaN), with one
    ``setting.<name>`` column per ``--set`` setting after ``sampler`` when any record has
    them, then the ``extra`` record fields asked for (e.g. ``key``). The efficiency columns
    (:mod:`harness.results.efficiency`) need the run's ``manifest`` for the peak and the
    precision; without it, % of peak is blank."""
    records = list(records)
    peaks = efficiency.manifest_peaks(manifest)
    rows = [{"model": r.model, "sampler": r.sampler, "seed": r.seed, "status": r.status,
             **{name: r.metric(name) for name in NAMES}, "wall_seconds": r.wall_seconds,
             "num_params": r.num_params, **efficiency.record_columns(r, manifest, peaks),
             **{name: getattr(r, name) for name in extra}}
            for r in records]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    frame = frame.astype({name: float for name in [*NAMES, "wall_seconds", *EFFICIENCY[:-1]]})
    frame["tokens_per_sec_unreliable"] = frame["tokens_per_sec_unreliable"].astype(object)
    settings = _settings_frame(records)
    for position, column in enumerate(settings.columns, start=COLUMNS.index("sampler") + 1):
        frame.insert(position, column, settings[column])
    order = ["model", "sampler", *settings.columns, "seed"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _settings_frame(records: list[Record]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r.settings) for r in records], index=range(len(records)))
    return frame[sorted(frame.columns)].add_prefix(SETTING_PREFIX)


def load_run(path: str | Path) -> pd.DataFrame:
    """The results of one run directory, one row per combination, with its ``run_id``."""
    store = RunStore.open(Path(path))
    manifest = store.manifest()
    frame = results_frame(store.records(), manifest=manifest)
    frame.insert(0, "run_id", manifest.run_id)
    return frame


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Several run directories as one frame, in the order given."""
    frames = [load_run(path) for path in paths]
    if not frames:
        raise ValueError("load_runs needs at least one run directory")
    return pd.concat(frames, ignore_index=True)


def summarize_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-seed results (from :func:`load_run` or :func:`load_runs`) summarised per run and
    group: seeds recorded and ok, mean and sample std of each metric over ok seeds."""
    if "run_id" not in frame or frame.empty:
        return aggregate(frame.drop(columns="run_id", errors="ignore"))
    parts = [aggregate(rows).assign(run_id=run_id)
             for run_id, rows in frame.groupby("run_id", sort=False)]
    summary = pd.concat(parts, ignore_index=True)
    return summary[["run_id", *summary.columns.drop("run_id")]]


def format_table(frame: pd.DataFrame) -> str:
    """The per-seed results table as Markdown (report.md shows it), text cells escaped;
    a metric no row measured is left out (bpc on d2l's task), d2l's three always stay."""
    shown = frame.drop(columns=[c for c in ("run_id",) if c in frame])
    shown = shown.drop(columns=[name for name in NAMES if name not in D2L_NAMES
                                and name in shown and shown[name].isna().all()])
    no_flops = "flops_per_sec" not in shown or shown["flops_per_sec"].isna().all()
    shown = shown.drop(columns=[c for c in EFFICIENCY if c in shown
                                and (c not in SHOWN_EFFICIENCY or no_flops)])
    flags = list(frame.get("tokens_per_sec_unreliable", [None] * len(frame)))
    if any(efficiency.flagged(f) for f in flags):  # tokens/sec and what is made from it
        for column, text in (("tokens_per_sec", "{:.0f}"), ("percent_of_peak", "{:.3g}")):
            if column in shown:
                shown[column] = efficiency.marked(
                    ["" if pd.isna(v) else text.format(v) for v in shown[column]], flags)
    if "flops_per_sec" in shown:
        shown["flops_per_sec"] = [efficiency.marked([efficiency.si(v)], [f])[0] or None
                                  for v, f in zip(shown["flops_per_sec"], flags)]
        shown = shown.astype({"flops_per_sec": object})
    formats = [FLOAT_FORMATS.get(column, "g") for column in shown.columns]
    return markdown_table(shown.rename(columns=SHOWN_EFFICIENCY), floatfmt=formats)


def group_members(frame: pd.DataFrame, row: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """The per-seed rows of ``frame`` in the group of summary ``row`` (grouped by ``keys``,
    as :func:`harness.results.stats.group_columns` gives them)."""
    mask = pd.Series(True, index=frame.index)
    for key in keys:
        value = row[key]
        mask &= frame[key].isna() if pd.isna(value) else frame[key] == value
    return frame[mask]


def group_label(row: pd.Series, keys: Sequence[str]) -> str:
    """``lstm / random / lr=0.5``: how the report's headings and charts name a group."""
    settings = [f"{k[len(SETTING_PREFIX):]}={row[k]}" for k in keys
                if k.startswith(SETTING_PREFIX) and pd.notna(row[k])]
    return " / ".join([str(row["model"]), str(row["sampler"]), *settings])


def efficiency_notes(summary: pd.DataFrame, manifest: Manifest | None) -> list[str]:
    """The lines under a report's results table: what FLOP/s and % of peak are, the run's
    peaks, and a footnote for each group whose tokens/sec is marked unreliable."""
    lines: list[str] = []
    flops = "flops_per_sec_mean" in summary and summary["flops_per_token"].notna().any()
    peaks = efficiency.manifest_peaks(manifest)
    if flops:
        lines += [
            "`FLOPs/token`: the model's declared training FLOPs per token (matrix products "
            "only, 3 x forward); `FLOP/s`: that times tokens/sec, mean over ok seeds; "
            "`% of peak`: of the matrix-product peak for the group's precision and thread "
            "count, " + ("below." if peaks else "which this run did not measure (a run "
                          "directory older than the measurement): blank."), ""]
    if peaks:
        rows = pd.DataFrame([{
            "device": p.get("name") or p.get("device"), "precision": p.get("precision"),
            "threads": "" if p.get("threads") is None else str(p.get("threads")),
            "peak FLOP/s": efficiency.si(p.get("flops_per_sec")), "kind": p.get("kind"),
            "load then": _load(p.get("load")),
            "how": p.get("source") or p.get("method") or ""} for p in peaks])
        lines += [markdown_table(rows.astype(object)), ""]
    keys = [k for k in summary.columns if k in ("model", "sampler")
            or k.startswith(SETTING_PREFIX)]
    above = [group_label(row, keys) for _, row in summary.iterrows()
             if (row.get("percent_of_peak_mean") or 0) > 100]
    if above:
        lines += [f"**The peak was measured low**: {escape_markdown(', '.join(above))} "
                  "reached more than 100 % of it, so the machine was busier when the peak "
                  "was measured (at the start) than during training; its % of peak says "
                  "little. Rerun on an idle machine.", ""]
    for _, row in summary.iterrows():
        if efficiency.flagged(row.get("tokens_per_sec_unreliable")):
            reasons = efficiency.unreliable_reasons(row.get("throughput_spread"),
                                                    row.get("max_load"), row.get("cpu_count"))
            lines.append(f"{efficiency.MARK} {escape_markdown(group_label(row, keys))}: "
                         f"tokens/sec (so its FLOP/s and % of peak) unreliable: "
                         f"{'; '.join(reasons)}.")
            lines.append("")
    return lines


def _load(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else ""
