"""Results as pandas DataFrames, read from run directories only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results.stats import SETTING_PREFIX
from harness.results.store import RunStore
from harness.results.tables import markdown_table

COLUMNS = ["model", "sampler", "seed", "status", "train_ppl", "valid_ppl", "tokens_per_sec",
           "wall_seconds", "num_params"]

FORMATS = {"train_ppl": ".3f", "valid_ppl": ".3f", "tokens_per_sec": ".0f", "wall_seconds": ".1f"}


def results_frame(records: Iterable[dict[str, Any]], extra: Sequence[str] = ()) -> pd.DataFrame:
    """One row per record, in the columns of :data:`COLUMNS` (missing values are NaN),
    plus one ``setting.<name>`` column per per-record setting (a record's ``settings``
    mapping), placed after ``sampler``, if any record has them, then the ``extra`` fields
    asked for (e.g. ``key``)."""
    records = list(records)
    frame = pd.DataFrame(records)
    for column in [*COLUMNS, *extra]:
        if column not in frame:
            frame[column] = None
    settings = _settings_frame(records)
    frame = frame[[*COLUMNS, *extra]].astype({"train_ppl": float, "valid_ppl": float,
                                   "tokens_per_sec": float, "wall_seconds": float})
    for position, column in enumerate(settings.columns, start=COLUMNS.index("sampler") + 1):
        frame.insert(position, column, settings[column])
    order = ["model", "sampler", *settings.columns, "seed"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _settings_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [r.get("settings") if isinstance(r.get("settings"), dict) else {} for r in records]
    frame = pd.DataFrame(rows, index=range(len(records)))
    return frame[sorted(frame.columns)].add_prefix(SETTING_PREFIX)


def load_run(path: str | Path) -> pd.DataFrame:
    """The results of one run directory, one row per combination, with its ``run_id``."""
    store = RunStore.open(Path(path))
    frame = results_frame(store.records())
    frame.insert(0, "run_id", store.manifest().get("run_id", store.path.name))
    return frame


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Several run directories as one frame (one row per seed and combination of each run,
    with its ``run_id``), in the order given."""
    frames = [load_run(path) for path in paths]
    if not frames:
        raise ValueError("load_runs needs at least one run directory")
    return pd.concat(frames, ignore_index=True)


def format_table(frame: pd.DataFrame) -> str:
    """The per-seed results table as Markdown (report.md shows it), text cells escaped."""
    shown = frame.drop(columns=[c for c in ("run_id",) if c in frame])
    return markdown_table(shown, floatfmt=[FORMATS.get(column, "g") for column in shown.columns])
