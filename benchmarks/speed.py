"""Seed code path vs harness trainer: tokens/sec, their ratio, and the machine's ceiling.

For each model, in one process and alternating round by round, this trains (a) the seed's
own code (``d2l_seed.py``: its model, ``train_epoch_ch8`` and d2l's iterators) and (b) the
harness's trainer with the harness's model, on the same corpus, recipe and thread count.
A warm-up epoch of each is run first and not counted. Each round also measures the
ceiling: the time the fp32 (or bf16) matrix products of one training token take on this
machine when run back to back (forward products x3 for the two backward products, input
products x2 since the one-hot input needs no gradient). Each side is reported as a
fraction of it; all three are medians over the rounds, so a slow spell on a shared machine
weighs on the ceiling as it does on the two sides.

Run from the repository root::

    python benchmarks/speed.py --corpus ../shared/data/timemachine.txt --models scratch,nnrnn

Numbers are noisy on shared machines; the ratio (same process, alternating) holds better
than the absolute rates.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import d2l_seed  # noqa: E402

from harness.plugin.manager import load_registry  # noqa: E402
from harness.machine.determinism import make_thread_invariant  # noqa: E402
from harness.data.taskfile import load_task  # noqa: E402
from harness.plan.fits import prepare, task_recipe  # noqa: E402
from harness.train.trainer import seed_everything, train  # noqa: E402

CPU = torch.device("cpu")
GATES = {"scratch": 1, "nnrnn": 1, "scratch-gru": 3, "gru": 3, "scratch-lstm": 4, "lstm": 4}


def matmul_seconds(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 200) -> float:
    """Median seconds of one (m, k) @ (k, n) product, measured in batches of ``repeats``."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    for _ in range(20):
        torch.mm(a, b, out=out)
    samples = []
    for _ in range(5):
        tick = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        samples.append((time.perf_counter() - tick) / repeats)
    return statistics.median(samples)


def ceiling(model: str, V: int, H: int, B: int, dtype: torch.dtype) -> float:
    """Tokens/sec if a training step did nothing but its matrix products."""
    gates = GATES[model]
    per_step = (gates * 2 * matmul_seconds(B, V, H, dtype)     # inputs (no input grad)
                + gates * 3 * matmul_seconds(B, H, H, dtype)   # recurrence
                + 3 * matmul_seconds(B, H, V, dtype))          # output layer
    return B / per_step


def seed_rates(net, updater, corpus, args, epochs: int) -> list[float]:
    loader = d2l_seed.SeqDataLoader(corpus, args.batch_size, args.steps,
                                    use_random_iter=args.sampler == "random")
    loss = nn.CrossEntropyLoss()
    return [d2l_seed.train_epoch_ch8(net, loader, loss, updater, CPU,
                                     use_random_iter=args.sampler != "sequential")[1]
            for _ in range(epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="scratch,nnrnn")
    parser.add_argument("--sampler", default="sequential",
                        choices=["sequential", "random", "sequential-reset"])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per side per round")
    parser.add_argument("--hiddens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="the harness side's precision (the seed's code is always fp32)")
    parser.add_argument("--reproducible", action="store_true",
                        help="both sides in 'harness run --reproducible' mode")
    args = parser.parse_args()
    if args.reproducible:  # before this process's first matrix product
        make_thread_invariant()
    torch.set_num_threads(args.threads)

    task = load_task("timemachine")
    recipe = task_recipe(task).with_overrides(num_hiddens=args.hiddens, batch_size=args.batch_size,
                                        num_steps=args.steps, lr=args.lr, epochs=args.epochs,
                                        valid_tokens=0, precision=args.precision)
    data = prepare(task, recipe, args.corpus)
    registry = load_registry(autoload=False)
    V = len(data.vocab)
    print(f"torch {torch.__version__}, {args.threads} thread(s), sampler {args.sampler}, "
          f"hidden {args.hiddens}, batch {args.batch_size} x {args.steps} steps, "
          f"{len(data.train)} tokens/epoch, {args.rounds} rounds x {args.epochs} epochs, "
          f"harness precision {args.precision}"
          f"{', reproducible mode' if args.reproducible else ''}")
    print("| model | seed tok/s | harness tok/s | ratio | ceiling tok/s "
          f"({args.precision}) | seed % | harness % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        random.seed(0)
        torch.manual_seed(0)
        net, make_updater = d2l_seed.build(name, V, args.hiddens, CPU)
        updater = make_updater(args.lr)
        rng = seed_everything(0)
        settings = recipe.model_settings(reproducible=args.reproducible)
        model = registry.model(name).factory(V, settings, CPU)
        sampler = registry.sampler(args.sampler)

        def harness_rates(epochs: int) -> list[float]:
            result = train(model, sampler, data=data,
                           recipe=recipe.with_overrides(epochs=epochs), device=CPU,
                           rng=rng, prefixes=(), quiet=True)
            return [p.tokens_per_sec for p in result.curve]

        seed_rates(net, updater, data.train, args, 1)  # warm-up, not counted
        harness_rates(1)
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        seed, ours, tops = [], [], []
        for _ in range(args.rounds):
            seed += seed_rates(net, updater, data.train, args, args.epochs)
            ours += harness_rates(args.epochs)
            tops.append(ceiling(name, V, args.hiddens, args.batch_size, dtype))
        a, b, top = statistics.median(seed), statistics.median(ours), statistics.median(tops)
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {top:,.0f} | "
              f"{100 * a / top:.0f}% | {100 * b / top:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
