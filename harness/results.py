"""Results as pandas DataFrames, read from run directories only."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.store import RunStore

COLUMNS = ["model", "sampler", "seed", "status", "train_ppl", "valid_ppl", "tokens_per_sec",
           "wall_seconds", "num_params"]

FORMATS = {"train_ppl": ".3f", "valid_ppl": ".3f", "tokens_per_sec": ".0f", "wall_seconds": ".1f"}


def results_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, in the columns of :data:`COLUMNS` (missing values are NaN)."""
    frame = pd.DataFrame(list(records))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[COLUMNS].astype({"train_ppl": float, "valid_ppl": float,
                                   "tokens_per_sec": float, "wall_seconds": float})
    return frame.sort_values(["model", "sampler", "seed"], kind="stable").reset_index(drop=True)


def load_run(path: str | Path) -> pd.DataFrame:
    """The results of one run directory, one row per combination, with its ``run_id``."""
    store = RunStore.open(Path(path))
    frame = results_frame(store.records())
    frame.insert(0, "run_id", store.manifest().get("run_id", store.path.name))
    return frame


def format_table(frame: pd.DataFrame) -> str:
    """The results table as Markdown (what ``harness run`` prints and report.md shows)."""
    shown = frame.drop(columns=[c for c in ("run_id",) if c in frame])
    shown = shown.astype(object).where(shown.notna(), None)  # missing: blank, not "nan"
    formats = [FORMATS.get(column, "g") for column in shown.columns]
    return shown.to_markdown(index=False, floatfmt=formats, missingval="")
