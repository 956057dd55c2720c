"""What held-out scoring costs: validation's share of training time at the default cadence,
and how long the n-gram baseline takes to fit, on a held-out task (timemachine-full).

Runs the harness itself (``harness.run``) for each model at the task's recipe with a
token budget, then reads each record's curve: every validation's seconds
(``eval_seconds``) against the training seconds (validation excluded). Target: at most
10% at the default cadence (:func:`harness.train.heldout.eval_cadence`), and the n-gram
baseline fitted in under 5 s.

    python benchmarks/heldout_costs.py --corpus ../shared/data/timemachine.txt
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--task", default="timemachine-full")
    parser.add_argument("--models", default="lstm,gru,transformer,ngram")
    parser.add_argument("--budget", type=int, default=300_000,
                        help="training tokens per model (default: 300,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        result = harness.run(harness.RunRequest.from_options(
            task=args.task, models=tuple(args.models.split(",")), samplers=("random",),
            corpus=args.corpus, recipe={"budget_tokens": args.budget}, output_dir=Path(out),
            quiet=True))
        run = Path(result.path)
        manifest = json.loads((run / "manifest.json").read_text())
        print(f"task {args.task}, budget {args.budget:,} tokens, "
              f"{manifest['environment']['cpu']}, torch {manifest['environment']['torch']}, "
              f"{manifest['environment']['torch_threads']} threads")
        print("| model | validations | train s | validation s | validation / train | "
              "tokens/s | valid bpc | test bpc |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for line in (run / "records.jsonl").read_text().splitlines():
            record = json.loads(line)
            with open(run / "curves" / f"{record['key']}.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            evals = sum(float(r["eval_seconds"]) for r in rows)
            train = record["train_seconds"]
            if record.get("trained_by") == "counts":  # fitted once: train s is the fit
                share = f"fit in {train:.2f} s"
            else:
                share = f"{evals / train:.1%}"
            print(f"| {record['model']} | {len(rows)} | {train:.2f} | {evals:.2f} | "
                  f"{share} | {record['tokens_per_sec']:,.0f} | "
                  f"{record['valid_bpc']:.3f} | {record['test_bpc']:.3f} |")


if __name__ == "__main__":
    main()
