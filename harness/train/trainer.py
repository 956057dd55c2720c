"""Train one (model, sampler) combination: the seed's ``train_ch8`` loop, measured.

Semantics are d2l's: mean cross-entropy over the minibatch, plain SGD, global-norm
gradient clipping, perplexity = exp(mean loss per token) over an epoch, greedy text
generated after training.
The trainer knows models and samplers only through :mod:`harness.plugin.contracts`: the sampler
says whether state carries, the model makes and owns its state, and :func:`next_state` is
the one place that resets or detaches it.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from harness.plugin.contracts import LanguageModel, SamplerSpec, next_state
from harness.machine.device import precision_autocast, synchronize
from harness.machine.load import load_average
from harness.train.decoding import generate_text
from harness.plan.recipe import Recipe
from harness.data.dataset import Dataset


@dataclass
class EpochStats:
    """One point of the training curve. ``threads``: torch's intra-op threads during the
    epoch, which its tokens/sec was measured with (a ``--jobs`` worker may be given more
    as the grid's other workers finish; see :mod:`harness.execute.processes`). ``load``:
    the machine's 1-minute load average at the epoch's end (None where the OS has none)."""

    epoch: int
    train_ppl: float
    tokens_per_sec: float
    valid_ppl: float | None = None
    threads: int | None = None
    load: float | None = None


@dataclass
class TrainResult:
    """What training one combination produced. ``status`` is ``ok`` or ``diverged``."""

    status: str
    train_ppl: float | None
    valid_ppl: float | None
    tokens_per_sec: float | None
    train_seconds: float
    num_params: int
    generated: dict[str, str] = field(default_factory=dict)
    """Prefix -> the prefix and its greedy continuation."""
    curve: list[EpochStats] = field(default_factory=list)
    error: str | None = None


MAX_LOSS = math.log(sys.float_info.max)
"""The largest mean loss whose perplexity ``exp(loss)`` is a finite float (about 709.8).
A loss above it is divergence as surely as a NaN: the perplexity is infinite."""


def perplexity(mean_loss: float) -> float:
    """``exp(mean_loss)``, infinite (not an OverflowError) when the loss is too large."""
    return math.exp(mean_loss) if mean_loss <= MAX_LOSS else math.inf


def seed_everything(seed: int) -> random.Random:
    """Seed torch and Python's ``random``; return the generator the sampler draws from."""
    random.seed(seed)
    torch.manual_seed(seed)
    return random.Random(seed)


def clip_gradients(params: Iterable[Tensor], theta: float) -> None:
    """d2l's ``grad_clipping``: scale all gradients by ``min(1, theta / ||g||)``, where
    ``||g||`` is the norm of all gradients together. Two fused (foreach) kernels and no
    host sync, where the seed runs two ops per parameter and reads the norm on the host."""
    grads = [p.grad for p in params if p.grad is not None]
    # the foreach kernels torch's own clip_grad_norm_ uses, without its per-call bookkeeping
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (theta / norm).clamp_(max=1.0))


def train_step(
    model: nn.Module, batch: tuple[Tensor, Tensor], *, state: Any, carries: bool,
    optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler | None,
    params: list[Tensor], clip: float, autocast: Any, device: torch.device,
) -> tuple[float, Any, int]:
    """One minibatch, as every training loop takes it: the state by the sampler's rule,
    mean cross-entropy over time-major targets, fresh gradients clipped to ``clip``, an
    optimizer step and a schedule step. Returns the loss, the new state and the number of
    target tokens."""
    X, Y = batch
    state = next_state(model, state, carries=carries, batch_size=X.shape[0], device=device)
    y = Y.T.reshape(-1).to(device)  # time-major targets, as the logits
    with autocast:
        logits, state = model(X.to(device), state)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(params, clip)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    return loss.item(), state, y.numel()


def divergence(value: float, *, where: str) -> str:
    """Why a loss of ``value`` (NaN, infinite, or above :data:`MAX_LOSS`) stops training."""
    if not math.isfinite(value):
        return f"non-finite loss ({value:g}) at {where}"
    return f"loss {value:g} at {where}: perplexity overflows"


def steady_rate(rates: list[float]) -> float:
    """Steady-state tokens/sec: the median epoch after the first (warm-up) epoch."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def evaluation_batches(tokens: list[int], batch_size: int, num_steps: int):
    """Sequential partitioning from offset 0: deterministic, every token scored once."""
    n = ((len(tokens) - 1) // batch_size) * batch_size
    Xs = torch.tensor(tokens[:n]).reshape(batch_size, -1)
    Ys = torch.tensor(tokens[1: n + 1]).reshape(batch_size, -1)
    for i in range(0, (Xs.shape[1] // num_steps) * num_steps, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


@torch.no_grad()
def evaluate(
    model: LanguageModel, tokens: list[int], *, recipe: Recipe, carries: bool,
    device: torch.device
) -> float:
    """Perplexity on held-out ``tokens``, with the same state rule as training."""
    model.eval()
    state, loss_sum, count = None, 0.0, 0
    for X, Y in evaluation_batches(tokens, recipe.batch_size, recipe.num_steps):
        state = next_state(model, state, carries=carries, batch_size=X.shape[0],
                           device=device)
        y = Y.T.reshape(-1).to(device)
        logits, state = model(X.to(device), state)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        count += y.numel()
    model.train()
    return perplexity(loss_sum / count)


def train(
    model: nn.Module,
    sampler: SamplerSpec,
    *,
    data: Dataset,
    recipe: Recipe,
    device: torch.device,
    rng: random.Random,
    prefixes: tuple[str, ...] = (),
    num_preds: int = 50,
    label: str = "",
    quiet: bool = False,
    between_epochs: Callable[[], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> TrainResult:
    """Train ``model`` for ``recipe.epochs`` epochs and measure it.

    A non-finite loss, or one too large for its perplexity to be a finite number, stops
    training at that step with status ``diverged``. ``between_epochs`` is called before
    each epoch, outside its timing (an executor's worker uses it to take up cores that
    other workers left). ``optimizer``: the run's (default d2l's SGD at ``recipe.lr``);
    ``schedule``, stepped after every optimizer step: its learning-rate schedule.
    """
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    params = [p for p in model.parameters() if p.requires_grad]
    num_params = sum(p.numel() for p in params)
    curve: list[EpochStats] = []
    rates: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(recipe.epochs), desc=label, file=sys.stderr, leave=False,
               disable=True if quiet else None, dynamic_ncols=True)
    model.train()
    autocast = precision_autocast(device, recipe.precision)
    tokens = torch.as_tensor(data.train)  # once, not per epoch
    for epoch in bar:
        if between_epochs is not None:
            between_epochs()
        state, loss_sum, count = None, 0.0, 0
        synchronize(device)
        tick = time.perf_counter()
        batches = sampler.batches(tokens, recipe.batch_size, recipe.num_steps, rng)
        for step, (X, Y) in enumerate(batches, 1):
            value, state, n = train_step(model, (X, Y), state=state,
                                         carries=sampler.carries_state, optimizer=optimizer,
                                         schedule=schedule, params=params, clip=recipe.clip,
                                         autocast=autocast, device=device)
            if not value <= MAX_LOSS:  # NaN, inf, or an infinite perplexity
                bar.close()
                return TrainResult(
                    "diverged", None, None, None, time.perf_counter() - started, num_params,
                    curve=curve,
                    error=divergence(value, where=f"step {step} of epoch {epoch + 1}"))
            loss_sum += value * n
            count += n
        synchronize(device)
        rates.append(count / (time.perf_counter() - tick))
        point = EpochStats(epoch + 1, perplexity(loss_sum / count), rates[-1],
                           threads=torch.get_num_threads(), load=load_average())
        last = epoch + 1 == recipe.epochs
        if data.valid and (last or (recipe.eval_every and (epoch + 1) % recipe.eval_every == 0)):
            point.valid_ppl = evaluate(model, data.valid, recipe=recipe,
                                       carries=sampler.carries_state, device=device)
        curve.append(point)
        bar.set_postfix(ppl=f"{point.train_ppl:.2f}", refresh=False)
    bar.close()
    generated = {p: generate_text(model, p, num_preds=num_preds, vocab=data.vocab,
                                  tokenizer=data.tokenizer, separator=data.separator,
                                  device=device)
                 for p in prefixes}
    return TrainResult(
        "ok", curve[-1].train_ppl, curve[-1].valid_ppl, steady_rate(rates),
        time.perf_counter() - started, num_params, generated, curve,
    )
