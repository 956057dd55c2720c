"""Results as pandas DataFrames, one row per record, read from run directories only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from harness.metrics import D2L_NAMES, METRICS, NAMES
from harness.results.schema import Record
from harness.results.stats import SETTING_PREFIX, aggregate
from harness.results.store import RunStore
from harness.results.tables import markdown_table

IDENTITY = ["model", "sampler", "seed", "status"]
DETAILS = ["wall_seconds", "num_params"]
COLUMNS = [*IDENTITY, *NAMES, *DETAILS]
FLOAT_FORMATS = {**{m.name: f".{m.digits}f" for m in METRICS}, "wall_seconds": ".1f"}


def results_frame(records: Iterable[Record], extra: Sequence[str] = ()) -> pd.DataFrame:
    """One row per record in the columns of :data:`COLUMNS` (missing numbers NaN), with one
    ``setting.<name>`` column per ``--set`` setting after ``sampler`` when any record has
    them, then the ``extra`` record fields asked for (e.g. ``key``)."""
    records = list(records)
    rows = [{"model": r.model, "sampler": r.sampler, "seed": r.seed, "status": r.status,
             **{name: r.metric(name) for name in NAMES}, "wall_seconds": r.wall_seconds,
             "num_params": r.num_params, **{name: getattr(r, name) for name in extra}}
            for r in records]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    frame = frame.astype({name: float for name in [*NAMES, "wall_seconds"]})
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
    frame = results_frame(store.records())
    frame.insert(0, "run_id", store.manifest().run_id)
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
    return markdown_table(shown, floatfmt=[FLOAT_FORMATS.get(column, "g") for column in shown.columns])


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
