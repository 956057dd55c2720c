"""Serial grid vs ``--jobs N`` on one machine: wall time, and whether the results agree.

Runs the same grid twice through the harness API, first serially (torch using every core),
then with the process executor (``jobs`` workers, the cores split between them), and
prints both wall times, their ratio, and the largest relative difference between the two
runs' perplexities per combination (0 means bit-identical).

    python benchmarks/parallel.py --corpus ../shared/data/timemachine.txt --epochs 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.api import run
from harness.plan import DEFAULT_MODELS, DEFAULT_SAMPLERS
from harness.processes import ProcessExecutor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    grid = dict(models=args.models.split(","), samplers=args.samplers.split(","),
                corpus=args.corpus, device="cpu", quiet=True, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as out:
        tick = time.perf_counter()
        serial = run(output_dir=out, **grid)
        serial_s = time.perf_counter() - tick
        tick = time.perf_counter()
        parallel = run(output_dir=out, executor=ProcessExecutor(jobs=args.jobs), **grid)
        parallel_s = time.perf_counter() - tick
    keys = ["model", "sampler", "seed"]
    joined = serial.table.merge(parallel.table, on=keys, suffixes=("_serial", "_jobs"))
    print(f"grid: {len(joined)} combinations x {args.epochs} epochs")
    print(f"serial: {serial_s:.1f} s; --jobs {args.jobs}: {parallel_s:.1f} s; "
          f"ratio {parallel_s / serial_s:.2f}")
    print("| model | sampler | train ppl serial | train ppl jobs | max rel. diff |")
    print("|---|---|---:|---:|---:|")
    for _, row in joined.iterrows():
        diffs = [abs(row[f"{m}_serial"] - row[f"{m}_jobs"]) / abs(row[f"{m}_serial"])
                 for m in ("train_ppl", "valid_ppl")]
        print(f"| {row['model']} | {row['sampler']} | {row['train_ppl_serial']:.6f} | "
              f"{row['train_ppl_jobs']:.6f} | {max(diffs):.1e} |")


if __name__ == "__main__":
    main()
