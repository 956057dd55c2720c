"""Train one combination on a task with fixed splits, to a budget, and score it held out.

Training runs until the first budget is reached (tokens, optimizer steps, training
seconds, or epochs), with the run's optimizer and learning-rate schedule plugins. Every
``eval_tokens`` training tokens the whole validation split is scored without gradients;
the state with the best validation score is kept, and the test split is scored once, on
that state, at the end. Scores are bits per token and perplexity. The curve has one row
per validation, against tokens seen and training seconds (validation excluded), with the
thread count and the machine's load average then. A count model
(:class:`harness.plugin.contracts.CountModel`) is fitted once instead of trained.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from harness.data.dataset import Dataset
from harness.machine.device import precision_autocast, synchronize
from harness.machine.load import load_average
from harness.metrics import BITS
from harness.plan.recipe import Recipe
from harness.plugin.contracts import (OptimizerSpec, SamplerSpec, ScheduleSettings,
                                      ScheduleSpec, next_state)
from harness.train.decoding import generate_text
from harness.train.optimizers import build_optimizer, build_scheduler
from harness.train.trainer import MAX_LOSS, divergence, perplexity, train_step


@dataclass
class HeldOutResult:
    """What training and scoring one combination on a split task produced."""

    status: str
    metrics: dict[str, float | None]
    train_seconds: float
    num_params: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    generated: dict[str, str] = field(default_factory=dict)
    test_nll: Tensor | None = None
    """The negative log-likelihood (nats) of every scored test token, in stream order:
    what a paired comparison of two models on the same test characters needs."""
    error: str | None = None


WARMUP = 256
"""Tokens read (not scored) before each row of a scored split, so that no token is scored
without context: a fresh state at each of 32 row starts would charge every model for 32
cold starts, the recurrent ones most."""


@torch.no_grad()
def score(model: nn.Module, tokens: Sequence[int], *, batch_size: int, num_steps: int,
          device: torch.device, context: Sequence[int] = (), warmup: int = WARMUP) -> Tensor:
    """The per-token negative log-likelihood (nats) of ``tokens`` under ``model``, in
    stream order, as a 1-D float tensor on the CPU.

    The stream is cut into ``batch_size`` contiguous rows, scored ``num_steps`` at a time
    with the state carried along each row (the last window may be shorter); all tokens
    but the first and the at most ``batch_size - 1`` left over are scored. Each row's
    state first reads the ``warmup`` tokens before the row (for the first row, the end of
    ``context``: the text before the split), as far as ``context`` reaches.
    """
    was_training = model.training
    model.eval()
    rows = min(batch_size, max(1, (len(tokens) - 1) // 2))
    length = (len(tokens) - 1) // rows
    data = torch.tensor(tokens[: rows * length + 1])
    X = data[:-1].reshape(rows, length)
    Y = data[1:].reshape(rows, length)
    before = list(context[len(context) - min(warmup, len(context)):])
    state = _warm_up(model, torch.tensor(before + list(tokens[: rows * length]),
                                         dtype=torch.long),
                     rows=rows, length=length, offset=len(before), num_steps=num_steps,
                     device=device)
    parts = []
    for start in range(0, length, num_steps):
        x, y = X[:, start: start + num_steps], Y[:, start: start + num_steps]
        state = next_state(model, state, carries=True, batch_size=rows, device=device)
        logits, state = model(x.to(device), state)
        nll = F.cross_entropy(logits.float(), y.T.reshape(-1).to(device), reduction="none")
        parts.append(nll.reshape(y.shape[1], rows).T.cpu())  # (rows, steps)
    model.train(was_training)
    return torch.cat(parts, dim=1).reshape(-1)


def _warm_up(model: nn.Module, stream: Tensor, *, rows: int, length: int, offset: int,
             num_steps: int, device: torch.device) -> Any:
    """The state after reading, for each row ``r``, the ``offset`` tokens of ``stream``
    before its start ``offset + r * length`` (None when ``offset`` is 0)."""
    if offset == 0:
        return None
    before = torch.stack([stream[r * length: r * length + offset] for r in range(rows)])
    state = None
    for start in range(0, offset, num_steps):
        state = next_state(model, state, carries=True, batch_size=rows, device=device)
        _, state = model(before[:, start: start + num_steps].to(device), state)
    return state


def bits(nll: Tensor | float) -> float:
    """Mean bits per token of per-token negative log-likelihoods in nats."""
    mean = float(nll.double().mean()) if isinstance(nll, Tensor) else nll
    return mean * BITS


def total_steps(recipe: Recipe, *, train_tokens: int) -> int | None:
    """Optimizer steps the budget allows (what a decaying schedule spans), or None when
    only a seconds budget bounds training."""
    per_step = recipe.batch_size * recipe.num_steps
    candidates = [recipe.epochs * max(1, (train_tokens - 1) // per_step)]
    if recipe.budget_tokens:
        candidates.append(math.ceil(recipe.budget_tokens / per_step))
    if recipe.budget_steps:
        candidates.append(recipe.budget_steps)
    return min(candidates)


def schedule_settings(recipe: Recipe, *, train_tokens: int) -> ScheduleSettings:
    """What the recipe's schedule plugin is given: the steps its budget allows and the
    recipe's warm-up, floor and step-decay settings."""
    return ScheduleSettings(
        total_steps=total_steps(recipe, train_tokens=train_tokens) or 1,
        warmup_steps=recipe.warmup_steps, min_factor=recipe.min_lr_factor,
        step_every=recipe.step_every, gamma=recipe.step_gamma)


def eval_cadence(recipe: Recipe, *, train_tokens: int, valid_tokens: int) -> int:
    """Training tokens between validations: ``eval_tokens`` if given. Else the budget (in
    tokens, or steps times tokens per step) over ``k`` validations, ``k`` at most 10 and at
    most a quarter of the budget over the validation split's size: scoring without
    gradients costs about a third of a training step per token, so the validations cost
    at most about 8% of training. Without a token or step budget: once per epoch."""
    if recipe.eval_tokens:
        return recipe.eval_tokens
    per_step = recipe.batch_size * recipe.num_steps
    budget = recipe.budget_tokens or recipe.budget_steps * per_step
    if not budget:
        return max(per_step, train_tokens)
    times = max(1, min(10, budget // (4 * max(1, valid_tokens))))
    return max(per_step, budget // times)


def train_heldout(
    model: nn.Module, sampler: SamplerSpec, *, data: Dataset, recipe: Recipe,
    optimizer: OptimizerSpec, schedule: ScheduleSpec, device: torch.device,
    rng: random.Random, counts: bool = False, prefixes: tuple[str, ...] = (),
    num_preds: int = 50, label: str = "", quiet: bool = True,
) -> HeldOutResult:
    """Train ``model`` on ``data.train`` to the recipe's budget and score it (see the
    module's docstring); ``counts``: the model is a count model, fitted, not trained.
    Unless ``quiet``, a progress bar on stderr counts training tokens (toward the token
    budget, when there is one), labelled ``label``."""
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if counts:
        run = _fit_counts(model, data=data, recipe=recipe, device=device)
    else:
        run = _Run(model, sampler, data=data, recipe=recipe, device=device, rng=rng,
                   optimizer=optimizer, schedule=schedule)
        with tqdm(total=recipe.budget_tokens or None, desc=label, unit="tok", unit_scale=True,
                  file=sys.stderr, leave=False, disable=True if quiet else None,
                  dynamic_ncols=True) as bar:
            run.train(progress=bar.update)
    if run.error is not None:
        return HeldOutResult("diverged", {}, run.train_seconds, num_params, run.curve,
                             error=run.error)
    if run.best is not None:
        model.load_state_dict(run.best)
    test_nll = score(model, data.test, batch_size=recipe.batch_size,
                     num_steps=recipe.num_steps, device=device,
                     context=data.valid) if data.test else None
    metrics = {
        "train_bpc": run.train_bpc,
        "train_ppl": perplexity(run.train_bpc / BITS) if run.train_bpc is not None else None,
        "valid_bpc": run.best_bpc, "valid_ppl": perplexity(run.best_bpc / BITS),
        "test_bpc": bits(test_nll) if test_nll is not None else None,
        "test_ppl": perplexity(float(test_nll.double().mean())) if test_nll is not None
        else None,
        "tokens_per_sec": run.tokens / run.train_seconds if run.train_seconds > 0 else None,
        "tokens_to_target": run.target_tokens, "seconds_to_target": run.target_seconds,
    }
    generated = {p: generate_text(model, p, num_preds=num_preds, vocab=data.vocab,
                                  tokenizer=data.tokenizer, separator=data.separator,
                                  device=device) for p in prefixes}
    return HeldOutResult("ok", metrics, run.train_seconds, num_params, run.curve, generated,
                         test_nll)


class _Run:
    """The training loop's state: budgets, validation cadence, the best state so far."""

    def __init__(self, model: nn.Module, sampler: SamplerSpec, *, data: Dataset,
                 recipe: Recipe, device: torch.device, rng: random.Random,
                 optimizer: OptimizerSpec, schedule: ScheduleSpec) -> None:
        self.model, self.sampler, self.data, self.recipe = model, sampler, data, recipe
        self.device, self.rng = device, rng
        self.optimizer = build_optimizer(model, spec=optimizer, lr=recipe.lr,
                                         weight_decay=recipe.weight_decay)
        self.scheduler = build_scheduler(
            self.optimizer, spec=schedule,
            settings=schedule_settings(recipe, train_tokens=len(data.train)))
        self.cadence = eval_cadence(recipe, train_tokens=len(data.train),
                                    valid_tokens=len(data.valid))
        self.tokens = self.steps = 0
        self.train_seconds = 0.0
        self.curve: list[dict[str, Any]] = []
        self.best: dict[str, Tensor] | None = None
        self.best_bpc = math.inf
        self.train_bpc: float | None = None
        self.target_tokens: int | None = None
        self.target_seconds: float | None = None
        self.error: str | None = None
        self._loss_sum, self._loss_count = 0.0, 0

    def budget_left(self) -> bool:
        r = self.recipe
        return not ((r.budget_tokens and self.tokens >= r.budget_tokens)
                    or (r.budget_steps and self.steps >= r.budget_steps)
                    or (r.budget_seconds and self.train_seconds >= r.budget_seconds))

    def train(self, progress: Callable[[int], object] = lambda tokens: None) -> None:
        """Train to the first budget reached; ``progress(tokens)`` after every step."""
        model, recipe, device = self.model, self.recipe, self.device
        params = [p for p in model.parameters() if p.requires_grad]
        autocast = precision_autocast(device, recipe.precision)
        tokens = torch.as_tensor(self.data.train)
        next_eval = self.cadence
        model.train()
        for epoch in range(1, recipe.epochs + 1):
            state = None
            tick = time.perf_counter()
            for X, Y in self.sampler.batches(tokens, recipe.batch_size, recipe.num_steps,
                                             self.rng):
                value, state, n = train_step(
                    model, (X, Y), state=state, carries=self.sampler.carries_state,
                    optimizer=self.optimizer, schedule=self.scheduler, params=params,
                    clip=recipe.clip, autocast=autocast, device=device)
                if not value <= MAX_LOSS:
                    self.error = divergence(value, where=f"step {self.steps + 1}")
                    return
                self.steps += 1
                self.tokens += n
                self._loss_sum += value * n
                self._loss_count += n
                progress(n)
                now = time.perf_counter()
                self.train_seconds += now - tick
                tick = now
                budget_left = self.budget_left()
                if self.tokens >= next_eval or not budget_left:
                    synchronize(device)
                    self.validate(epoch)
                    next_eval = self.tokens + self.cadence
                    tick = time.perf_counter()
                    if recipe.stop_at_target and self.target_tokens is not None:
                        return
                if not budget_left:
                    return
            self.train_seconds += time.perf_counter() - tick
        if self._loss_count:
            self.validate(recipe.epochs)

    def validate(self, epoch: int, *, fitted: bool = False) -> None:
        """Score the whole validation split; keep the state if it is the best so far."""
        started = time.perf_counter()
        nll = score(self.model, self.data.valid, batch_size=self.recipe.batch_size,
                    num_steps=self.recipe.num_steps, device=self.device,
                    context=self.data.train)
        valid_bpc = bits(nll)
        self.train_bpc = self._loss_sum / self._loss_count * BITS if self._loss_count else None
        self._loss_sum, self._loss_count = 0.0, 0
        if valid_bpc < self.best_bpc:
            self.best_bpc = valid_bpc
            self.best = {k: v.detach().to("cpu", copy=True)
                         for k, v in self.model.state_dict().items()}
        metric, value = self.recipe.target_metric, self.recipe.target_value
        reached = (metric == "valid_bpc" and valid_bpc <= value) or \
            (metric == "valid_ppl" and perplexity(valid_bpc / BITS) <= value)
        if reached and self.target_tokens is None:
            self.target_tokens, self.target_seconds = self.tokens, self.train_seconds
        self.curve.append({
            "epoch": epoch, "step": self.steps, "tokens": self.tokens,
            "seconds": self.train_seconds,
            "lr": None if fitted else self.optimizer.param_groups[0]["lr"],
            "train_bpc": self.train_bpc, "valid_bpc": valid_bpc,
            "valid_ppl": perplexity(valid_bpc / BITS),
            "eval_seconds": time.perf_counter() - started,
            "threads": torch.get_num_threads(), "load": load_average(),
        })


def _fit_counts(model: nn.Module, *, data: Dataset, recipe: Recipe,
                device: torch.device) -> _Run:
    """Fit a count model once on the training split and validate it, as one curve row."""
    run = _Run.__new__(_Run)
    run.model, run.data, run.recipe, run.device = model, data, recipe, device
    run.curve, run.best, run.best_bpc, run.error = [], None, math.inf, None
    run.target_tokens = run.target_seconds = None
    run.steps, run._loss_sum, run._loss_count = 0, 0.0, 0
    started = time.perf_counter()
    model.fit(torch.as_tensor(data.train))  # type: ignore[operator]
    run.train_seconds = time.perf_counter() - started
    run.tokens = len(data.train)
    run.validate(1, fitted=True)
    run.best, run.train_bpc = None, None  # the fitted counts are the only state
    return run
