"""Serial grid vs ``--jobs N`` on one machine: wall time, and whether the results agree.

Runs the same grid twice through the harness API, first serially (torch using every core),
then with the process executor (``jobs`` workers, the cores split between them), and
prints both wall times and their ratio. Then it compares perplexities per combination
(largest relative difference, 0 meaning bit-identical) of the ``--jobs`` run with the
serial run, and with a serial run at the workers' thread count: oneMKL may sum in another
order with another number of threads, so by default only the latter can be bit-identical.
With ``--reproducible`` (``harness run --reproducible``: oneMKL's strict reproducibility
mode, see :mod:`harness.machine.determinism`) the ``--jobs`` run must match the serial run itself.

On a shared machine a slow spell can fall on one run and not the other: ``--rounds N``
alternates N serial and N ``--jobs`` runs and prints each round's ratio and their median
(and says if a round's perplexities differ from the first round's, which they should not).

In ``--reproducible`` mode the ``--jobs`` run lends the cores of workers left without
work to the busy ones (:mod:`harness.execute.processes`); ``--unlent`` adds to each round a
``--jobs`` run that leaves them idle, as the default mode must, to show what lending gains.

The serial run at the workers' thread count also gives each combination's time on one
worker, from which the script prints the best wall time any schedule of whole
combinations could reach (the best packing of those times onto the workers, with no
start-up cost): the bound that the ``--jobs`` ratio is to be read against where cores are
not lent; with lending, the bound is nearer their sum divided between the workers.

    python benchmarks/parallel.py --corpus ../shared/data/timemachine.txt --epochs 100
    python benchmarks/parallel.py --corpus ../shared/data/timemachine.txt --reproducible
    python benchmarks/parallel.py --corpus ../shared/data/timemachine.txt --rounds 3
    python benchmarks/parallel.py --corpus ../shared/data/timemachine.txt --reproducible \
        --rounds 3 --unlent --skip-thread-check
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from harness.drive.driver import run
from harness.data.taskfile import load_task
from harness.execute.processes import ProcessExecutor
from harness.machine.determinism import make_thread_invariant, reproducible_mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path)
    task = load_task("timemachine")  # its default grid, as 'harness run' trains it
    parser.add_argument("--models", default=",".join(task.default_models))
    parser.add_argument("--samplers", default=",".join(task.default_samplers))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1,
                        help="serial and --jobs runs, alternating; prints the median ratio")
    parser.add_argument("--skip-thread-check", action="store_true",
                        help="skip the serial run at the workers' thread count")
    parser.add_argument("--reproducible", action="store_true",
                        help="both runs as 'harness run --reproducible'")
    parser.add_argument("--unlent", action="store_true",
                        help="with --reproducible: also a --jobs run that lends no cores")
    args = parser.parse_args()
    if args.unlent and not args.reproducible:
        parser.error("--unlent needs --reproducible: only that mode lends cores")
    if args.reproducible:  # before this process's first matrix product
        make_thread_invariant()
    grid = dict(models=args.models.split(","), samplers=args.samplers.split(","),
                corpus=args.corpus, device="cpu", quiet=True, epochs=args.epochs)
    executor = ProcessExecutor(jobs=args.jobs)
    unlent = ProcessExecutor(jobs=args.jobs, lend_cores=False) if args.unlent else None
    with tempfile.TemporaryDirectory() as out:
        rounds = []  # (serial, --jobs[, --jobs unlent]) seconds per round, alternating
        for _ in range(args.rounds):
            runs, seconds = [], []
            for chosen in (None, executor, unlent)[:3 if unlent else 2]:
                tick = time.perf_counter()
                runs.append(run(output_dir=out, executor=chosen, **grid))
                seconds.append(time.perf_counter() - tick)
            serial, parallel = runs[:2]
            rounds.append(tuple(seconds))
            tables = [result.table for result in runs]
            if len(rounds) == 1:
                first = tables
            elif not all(_same(a, b) for a, b in zip(tables, first)):
                print(f"round {len(rounds)} did not repeat round 1's perplexities")
            if unlent and not _same(runs[2].table, serial.table):
                print(f"round {len(rounds)}: the unlent --jobs run differs from serial")
        threads = torch.get_num_threads()
        torch.set_num_threads(executor.threads)
        same_threads = serial if args.skip_thread_check else run(output_dir=out, **grid)
        torch.set_num_threads(threads)
    print(f"grid: {len(serial.table)} combinations x {args.epochs} epochs; serial with "
          f"{threads} torch threads, --jobs {args.jobs} with {executor.threads} each; "
          f"reproducible mode {'on' if reproducible_mode() else 'off'}")
    lending = "lending idle cores" if executor.lends_cores else "not lending idle cores"
    for serial_s, parallel_s, *unlent_s in rounds:
        print(f"serial: {serial_s:.1f} s; --jobs {args.jobs} ({lending}): {parallel_s:.1f} s;"
              f" ratio {parallel_s / serial_s:.2f}" + "".join(
                  f"; --jobs {args.jobs} not lending: {u:.1f} s, ratio {u / serial_s:.2f}"
                  for u in unlent_s))
    serial_s, parallel_s, *unlent_s = (statistics.median(s) for s in zip(*rounds))
    if len(rounds) > 1:
        ratio = statistics.median(r[1] / r[0] for r in rounds)
        print(f"medians over {len(rounds)} rounds: serial {serial_s:.1f} s, --jobs "
              f"{args.jobs} {parallel_s:.1f} s; the rounds' ratios' median {ratio:.2f}"
              + "".join(f"; not lending {u:.1f} s, ratios' median "
                        f"{statistics.median(r[2] / r[0] for r in rounds):.2f}"
                        for u in unlent_s))
    if not args.skip_thread_check:
        times = same_threads.table["wall_seconds"].tolist()
        best = best_packing(times, args.jobs)
        print(f"best possible --jobs {args.jobs} wall time from the combinations' times at "
              f"{executor.threads} thread(s) ({', '.join(f'{t:.1f}' for t in times)} s): "
              f"{best:.1f} s, ratio {best / serial_s:.2f} (sum / {args.jobs}: "
              f"{sum(times) / args.jobs:.1f} s, ratio {sum(times) / args.jobs / serial_s:.2f})")
    print(f"| model | sampler | train ppl serial | train ppl --jobs | max rel. diff vs serial "
          f"| vs serial at {executor.threads} thread(s) |")
    print("|---|---|---:|---:|---:|---:|")
    keys = ["model", "sampler", "seed"]
    for _, row in _join(parallel.table, serial.table, same_threads.table, keys).iterrows():
        same = "skipped" if args.skip_thread_check else f"{_diff(row, 'c'):.1e}"
        print(f"| {row['model']} | {row['sampler']} | {row['train_ppl_b']:.6f} | "
              f"{row['train_ppl_a']:.6f} | {_diff(row, 'b'):.1e} | {same} |")


def _join(a: pd.DataFrame, b: pd.DataFrame, c: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    metrics = ["train_ppl", "valid_ppl"]
    parts = [t[keys + metrics].rename(columns={m: f"{m}_{s}" for m in metrics})
             for t, s in ((a, "a"), (b, "b"), (c, "c"))]
    return parts[0].merge(parts[1], on=keys).merge(parts[2], on=keys)


def best_packing(times: list[float], workers: int) -> float:
    """The smallest makespan of running jobs of these durations, whole, on ``workers``
    workers: every assignment is tried (fine for a grid's handful of combinations)."""
    best = sum(times)
    for assignment in itertools.product(range(workers), repeat=len(times)):
        loads = [0.0] * workers
        for worker, seconds in zip(assignment, times):
            loads[worker] += seconds
        best = min(best, max(loads))
    return best


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two runs' tables hold the same perplexities, bit for bit."""
    keys = ["model", "sampler", "seed"]
    a, b = (t[keys + ["train_ppl", "valid_ppl"]].sort_values(keys).reset_index(drop=True)
            for t in (a, b))
    return a.equals(b)


def _diff(row: pd.Series, other: str) -> float:
    """Largest relative difference of the --jobs run's perplexities from run ``other``."""
    return max(abs(row[f"{m}_a"] - row[f"{m}_{other}"]) / abs(row[f"{m}_{other}"])
               for m in ("train_ppl", "valid_ppl"))


if __name__ == "__main__":
    main()
