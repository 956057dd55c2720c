"""A held-out run among published results: the task file's ``[[published]]`` numbers
(:mod:`harness.data.published`) beside the run's best group in the same metric.

These numbers come from other recipes, sizes and budgets; the section says so, and gives
the published model's parameter count where known, so that a reader compares like with
like or sees at once that the comparison is not.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.data.published import Published, published_from_json
from harness.results.schema import Manifest
from harness.results.stats import group_columns
from harness.results.tables import markdown_table


def literature_section(manifest: Manifest, summary: pd.DataFrame | None) -> list[str]:
    """Markdown lines of the "Published numbers on this task" section; none when the
    manifest stores no published numbers (or stores them malformed: said in one line)."""
    try:
        published = published_from_json(manifest.extra.get("published"))
    except ValueError as error:
        return ["## Published numbers on this task", "",
                f"The manifest's published numbers are unreadable ({error}); skipped.", ""]
    if not published:
        return []
    rows = [_row(entry, summary) for entry in published]
    return ["## Published numbers on this task", "",
            "What other work reports on the same text and split, with its source, beside "
            "this run's best group in the same metric (mean over its ok seeds). Published "
            "models were trained with their own recipes, sizes and budgets: the comparison "
            "places this run, it does not reproduce them.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def _row(entry: Published, summary: pd.DataFrame | None) -> dict[str, Any]:
    best = _best(summary, entry.metric)
    ours = f"{best[1]:.3f} ({best[0]})" if best else "not measured"
    return {"published model": entry.model,
            "params": f"{entry.params:,}" if entry.params else "",
            "metric": entry.metric, "published": f"{entry.value:g}", "ours, best group": ours,
            "source": entry.source + (f"; {entry.note}" if entry.note else "")}


def _best(summary: pd.DataFrame | None, metric: str) -> tuple[str, float] | None:
    """The group with the lowest mean ``metric`` and that mean, or None."""
    column = f"{metric}_mean"
    if summary is None or column not in summary or not summary[column].notna().any():
        return None
    row = summary.loc[summary[column].idxmin()]
    label = "/".join(str(row[k]) for k in group_columns(summary)
                     if not (isinstance(row[k], float) and math.isnan(row[k])))
    return label, float(row[column])
