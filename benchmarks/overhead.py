"""Where a harness training step spends its time: the model vs the harness around it.

Profiles ``harness.train.trainer.train`` with cProfile for a few epochs and splits the time into
the model's work (forward, loss, backward, optimizer step) and the harness's own work
around it (batching by the sampler, state reset/detach, gradient clipping, metrics, the
progress bar). cProfile slows Python-level calls more than torch kernels, so the harness
share it reports is an upper bound.

With ``--ops N`` it then profiles one more epoch with torch's profiler and prints the N
torch operators that took the most time of their own (matrix products, elementwise work,
copies), with their share and call counts: where the model's time goes, which is what to
read when a model is far from the matrix-product ceiling that ``speed.py`` reports.

    python benchmarks/overhead.py --corpus ../shared/data/timemachine.txt --model scratch
    python benchmarks/overhead.py --corpus ../shared/data/timemachine.txt --model nnrnn --ops 12
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.plugin.manager import load_registry
from harness.data.taskfile import load_task
from harness.plan.fits import prepare, task_recipe
from harness.train.trainer import seed_everything, train

Match = Callable[[str, str], bool]
"""Whether a profile entry, by its file and function name, is part of a row."""


def named(needle: str) -> Match:
    """Entries whose ``file:function`` (or function name alone) contains ``needle``."""
    return lambda filename, name: needle in f"{Path(filename).name}:{name}" or needle in name


def progress_bar(filename: str, name: str) -> bool:
    """tqdm's calls from the trainer (making the bar, iterating it, ``set_postfix``,
    ``close``): its outermost entries, whose times do not nest in one another, unlike
    all of tqdm's functions together."""
    return Path(filename).parent.name == "tqdm" and Path(filename).name == "std.py" \
        and name in ("__init__", "__iter__", "set_postfix", "close")


# (label, which profile entries) for the harness's own work
HARNESS_PARTS: list[tuple[str, Match]] = [
    ("batching (sampler)", named("samplers.py:seq_data_iter")),
    ("state reset/detach", named("contracts.py:next_state")),
    ("gradient clipping", named("trainer.py:clip_gradients")),
    ("metrics (loss.item)", named("method 'item'")),
    ("progress bar", progress_bar),
]
MODEL_PARTS: list[tuple[str, Match]] = [
    ("forward", named("module.py:_wrapped_call_impl")),
    ("loss", named("functional.py:cross_entropy")),
    ("backward", named("_tensor.py:backward")),
    ("optimizer step", named("optimizer.py:wrapper")),
    ("zero_grad", named("optimizer.py:zero_grad")),
]


def cumulative(stats: pstats.Stats, match: Match) -> float:
    """Cumulative seconds of the profile entries ``match`` picks (each row's are the
    outermost calls of its part, so they do not count one another's time)."""
    total = 0.0
    for (filename, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if match(filename, name):
            total += cum
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="scratch")
    parser.add_argument("--sampler", default="sequential")
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hiddens", type=int, default=512)
    parser.add_argument("--ops", type=int, default=0, metavar="N",
                        help="also print the N torch operators with the most self time")
    args = parser.parse_args()
    task = load_task("timemachine")
    recipe = task_recipe(task).with_overrides(epochs=args.epochs, num_hiddens=args.hiddens,
                                        valid_tokens=0)
    data = prepare(task, recipe, args.corpus)
    registry = load_registry(autoload=False)
    rng = seed_everything(0)
    model = registry.model(args.model).factory(len(data.vocab), recipe.model_settings(),
                                               torch.device("cpu"))
    sampler = registry.sampler(args.sampler)
    train(model, sampler, data=data, recipe=recipe.with_overrides(epochs=1),
          device=torch.device("cpu"), rng=rng, prefixes=(), quiet=True)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    train(model, sampler, data=data, recipe=recipe, device=torch.device("cpu"), rng=rng,
          prefixes=(), quiet=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = cumulative(stats, named("trainer.py:train"))
    print(f"model {args.model}, sampler {args.sampler}, {args.epochs} epochs, "
          f"{total:.2f} s in train() under cProfile")
    print("| part | seconds | share of train() |\n|---|---:|---:|")
    rows = [("model: " + label, cumulative(stats, match)) for label, match in MODEL_PARTS]
    rows += [("harness: " + label, cumulative(stats, match)) for label, match in HARNESS_PARTS]
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {100 * seconds / total:.2f}% |")
    harness = sum(s for label, s in rows if label.startswith("harness"))
    print(f"| harness total | {harness:.3f} | {100 * harness / total:.2f}% |")
    if args.ops:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train(model, sampler, data=data, recipe=recipe.with_overrides(epochs=1),
                  device=torch.device("cpu"), rng=rng, prefixes=(), quiet=True)
        print_operators(prof.key_averages(), args.ops)


def print_operators(events: Any, count: int) -> None:
    """The ``count`` operators with the most self CPU time, as a Markdown table."""
    ops = sorted((e for e in events if e.key.startswith("aten::")),
                 key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\none epoch under torch.profiler: {total / 1e3:.1f} ms of self CPU time")
    print("| operator | self ms | share | calls | µs per call |\n|---|---:|---:|---:|---:|")
    for e in ops[:count]:
        print(f"| {e.key} | {e.self_cpu_time_total / 1e3:.1f} | "
              f"{100 * e.self_cpu_time_total / total:.1f}% | {e.count} | "
              f"{e.self_cpu_time_total / e.count:.1f} |")
    products = sum(e.self_cpu_time_total for e in ops
                   if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                                "aten::addmm_", "aten::baddbmm_"))
    print(f"matrix products (mm, addmm, bmm, baddbmm): {100 * products / total:.1f}% of the "
          "self time")


if __name__ == "__main__":
    main()
