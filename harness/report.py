"""report.md, derived from a run directory alone (so it can be regenerated any time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import format_table, results_frame
from harness.store import RunStore

CURVE_POINTS = 10
"""How many epochs of each curve the report's table shows (evenly spaced, always the last)."""


def render_report(store: RunStore) -> str:
    """The Markdown report: settings and environment, results, samples, curves."""
    manifest = store.manifest()
    records = store.records()
    parts = [f"# Run {manifest.get('run_id', store.path.name)}", ""]
    parts += _settings(manifest)
    parts += ["## Results", "", _results(records), ""]
    parts += _problems(records)
    parts += _samples(records)
    parts += _curves(store, records)
    return "\n".join(parts).rstrip() + "\n"


def write_report(store: RunStore) -> Path:
    """Render the report and write it atomically to ``report.md``."""
    return store.write_text("report.md", render_report(store))


def _kv_table(pairs: dict[str, Any]) -> str:
    frame = pd.DataFrame({"setting": list(pairs), "value": [str(v) for v in pairs.values()]})
    return frame.to_markdown(index=False)


def _settings(manifest: dict[str, Any]) -> list[str]:
    settings = manifest.get("settings", {})
    env = manifest.get("environment", {})
    corpus = settings.get("corpus", {})
    run = {
        "status": manifest.get("status"),
        "command": manifest.get("command", ""),
        "task": settings.get("task"),
        "models": ", ".join(settings.get("models", [])),
        "samplers": ", ".join(settings.get("samplers", [])),
        "seeds": ", ".join(str(s) for s in settings.get("seeds", [])),
        "corpus sha1": corpus.get("sha1"),
        "vocabulary": corpus.get("vocab_size"),
        "train / validation tokens": f"{corpus.get('train_tokens')} / {corpus.get('valid_tokens')}",
        **{k: v for k, v in settings.get("recipe", {}).items()},
    }
    plugins = ", ".join(f"{p['plugin']} ({p['distribution']} {p['version']})"
                        for p in env.get("plugins", []))
    environment = {k: v for k, v in env.items() if k not in ("plugins", "plugin_failures")}
    environment["plugins"] = plugins
    return ["## Settings", "", _kv_table(run), "", "## Environment", "",
            _kv_table(environment), ""]


def _results(records: list[dict[str, Any]]) -> str:
    if not records:
        return "No combination has finished."
    return format_table(results_frame(records))


def _problems(records: list[dict[str, Any]]) -> list[str]:
    """The combinations that did not finish ok, with their errors (statuses in README)."""
    bad = [r for r in records if r.get("status") != "ok"]
    if not bad:
        return []
    rows = [{"model": r["model"], "sampler": r["sampler"], "seed": r["seed"],
             "status": r["status"],
             "error": " ".join(str(r.get("error") or "").split()).replace("|", "\\|")}
            for r in bad]
    return ["## Problems", "",
            "Combinations that did not finish ok; they have no numbers to average. "
            "Tracebacks (or how the process died) are in `errors/<key>.txt`.", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


def _samples(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Samples", "", "Greedy continuations (50 tokens) after training.", ""]
    rows = [
        {"model": r["model"], "sampler": r["sampler"], "seed": r["seed"], "prefix": prefix,
         "text": text}
        for r in records for prefix, text in (r.get("samples") or {}).items()
    ]
    if not rows:
        return lines + ["No samples.", ""]
    return lines + [pd.DataFrame(rows).to_markdown(index=False), ""]


def _curves(store: RunStore, records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training curves", "",
             "Training perplexity by epoch (validation perplexity where it was measured).", ""]
    columns: dict[str, pd.Series] = {}
    for record in records:
        curve = store.curve(record["key"])
        if not curve:
            continue
        frame = pd.DataFrame(curve).set_index("epoch")
        label = f"{record['model']}/{record['sampler']}/{record['seed']}"
        columns[f"{label} train"] = frame["train_ppl"]
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
