"""The ``ngram`` baseline on the Time Machine: fit seconds, validation and test bits per char.

The corpus goes through the harness's own text pipeline (d2l preprocessing, character
tokens, the vocabulary over the whole corpus: :func:`harness.data.dataset.load_dataset`),
and its token ids are split 80/10/10 in order: train, validation, test. For each order the
model is fitted on the train split (timed, on ``--threads`` torch threads), then each of
the other splits is scored as one sequence from a fresh state (its first tokens with the
shorter contexts a sequence start has). Bits per char is the mean negative log-likelihood
over ln 2. Run from the repository root::

    python benchmarks/ngram.py --corpus ../shared/data/timemachine.txt
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from harness.data.dataset import load_dataset
from harness.data.taskfile import load_task
from harness.plugin.contracts import ModelSettings
from harness.plugin.manager import load_registry

CPU = torch.device("cpu")


def bits_per_token(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, float]:
    """Bits per token of ``ids`` scored as one sequence from a fresh state, and seconds."""
    tick = time.perf_counter()
    X, Y = ids[:-1].unsqueeze(0), ids[1:]
    with torch.no_grad():
        logp, _ = model(X, model.begin_state(1, CPU))
    nll = F.cross_entropy(logp, Y).item()  # one row: time-major order is Y's order
    return nll / math.log(2), time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=None,
                        help="a copy of the task's corpus (default: the harness's cache)")
    parser.add_argument("--orders", default="1,2,3,4,5,6,7")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = load_task("timemachine")
    data = load_dataset(task, max_tokens=2 ** 62, valid_tokens=0, corpus=args.corpus,
                        quiet=True)
    ids = torch.tensor(data.train, dtype=torch.long)  # every token: nothing held back
    n = ids.numel()
    cut1, cut2 = int(0.8 * n), int(0.9 * n)
    train, valid, test = ids[:cut1], ids[cut1:cut2], ids[cut2:]
    spec = load_registry(autoload=False).model("ngram")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {n} chars, vocabulary "
          f"{len(data.vocab)}; split {train.numel()}/{valid.numel()}/{test.numel()}")
    print("| order | fit s | valid bpc | test bpc | score s |")
    print("|---:|---:|---:|---:|---:|")
    for order in (int(o) for o in args.orders.split(",")):
        model = spec.factory(len(data.vocab), ModelSettings(0, options={"order": order}), CPU)
        tick = time.perf_counter()
        model.fit(train)
        fit = time.perf_counter() - tick
        valid_bpc, valid_s = bits_per_token(model, valid)
        test_bpc, test_s = bits_per_token(model, test)
        print(f"| {order} | {fit:.3f} | {valid_bpc:.3f} | {test_bpc:.3f} | "
              f"{valid_s + test_s:.3f} |")


if __name__ == "__main__":
    main()
