"""Built-in optimizers and learning-rate schedules.

Optimizers (weight decay, when given, applies to matrices only, i.e. parameters with
``ndim >= 2``; biases, norm scales and other 1-D parameters sit in a group with weight
decay 0; the one-hot/embedding input weights ``W_xh`` of the scratch RNN are a matrix):

- ``sgd``: plain SGD, d2l's. Without weight decay it is exactly
  ``torch.optim.SGD(params, lr=lr)``, the optimizer the trainer has always built, so its
  numbers stay bit-identical. With weight decay, SGD's coupled L2 on the matrices.
- ``adam``: ``torch.optim.Adam`` with torch's defaults (betas (0.9, 0.999), eps 1e-8);
  weight decay is Adam's coupled L2 (added to the gradient), on the matrices.
- ``adamw``: ``torch.optim.AdamW`` with torch's default betas (0.9, 0.999) and eps 1e-8;
  weight decay is decoupled (``p -= lr * wd * p`` each step, whatever the gradient), on
  the matrices.

Schedules (a factor on the base learning rate for each 0-based optimizer step):

- ``constant``: 1.
- ``cosine``: linear warmup ``(step + 1) / warmup_steps`` over the first ``warmup_steps``
  steps, then a half cosine from 1 at ``warmup_steps`` down to ``min_factor`` at
  ``total_steps``; from ``total_steps`` on it stays at ``min_factor``.
- ``step``: the same warmup, then ``gamma ** ((step - warmup_steps) // step_every)``;
  ``step_every`` 0 keeps it at 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from harness import hookimpl
from harness.plugin.contracts import (OptimizerSettings, OptimizerSpec, ScheduleSettings,
                                      ScheduleSpec)

NamedParameters = Sequence[tuple[str, nn.Parameter]]


def decay_groups(params: NamedParameters, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups: matrices (``ndim >= 2``) with ``weight_decay``, the other
    parameters with 0; a group with no parameters is left out."""
    matrices = [p for _, p in params if p.ndim >= 2]
    others = [p for _, p in params if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay},
              {"params": others, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_sgd(params: NamedParameters, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """d2l's SGD; with weight decay, coupled L2 on the matrices only."""
    if settings.weight_decay == 0:
        return torch.optim.SGD([p for _, p in params], lr=settings.lr)
    return torch.optim.SGD(decay_groups(params, settings.weight_decay), lr=settings.lr)


def build_adam(params: NamedParameters, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """Adam (torch's defaults); with weight decay, coupled L2 on the matrices only."""
    return torch.optim.Adam(decay_groups(params, settings.weight_decay), lr=settings.lr)


def build_adamw(params: NamedParameters, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """AdamW (torch's defaults, betas (0.9, 0.999)); decoupled weight decay on the matrices
    only (torch's own default of 0.01 is never used: the weight decay is always given)."""
    return torch.optim.AdamW(decay_groups(params, settings.weight_decay), lr=settings.lr,
                             weight_decay=settings.weight_decay)


def _warmup(step: int, settings: ScheduleSettings) -> float | None:
    """The warmup factor ``(step + 1) / warmup_steps`` during warmup, else None."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    return None


def constant(step: int, settings: ScheduleSettings) -> float:
    """The base learning rate throughout."""
    return 1.0


def cosine(step: int, settings: ScheduleSettings) -> float:
    """Linear warmup, then a half cosine from 1 to ``min_factor`` at ``total_steps``."""
    if step >= settings.total_steps:
        return settings.min_factor
    warm = _warmup(step, settings)
    if warm is not None:
        return warm
    progress = (step - settings.warmup_steps) / (settings.total_steps - settings.warmup_steps)
    half_cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return settings.min_factor + (1 - settings.min_factor) * half_cosine


def step_decay(step: int, settings: ScheduleSettings) -> float:
    """Linear warmup, then times ``gamma`` every ``step_every`` steps (0: never)."""
    warm = _warmup(step, settings)
    if warm is not None:
        return warm
    if settings.step_every <= 0:
        return 1.0
    return settings.gamma ** ((step - settings.warmup_steps) // settings.step_every)


OPTIMIZERS = (
    OptimizerSpec("sgd", build_sgd, "plain SGD (d2l's); weight decay: coupled L2 on matrices"),
    OptimizerSpec("adam", build_adam, "Adam, betas (0.9, 0.999); weight decay: coupled L2 on "
                                      "matrices"),
    OptimizerSpec("adamw", build_adamw, "AdamW, betas (0.9, 0.999); weight decay: decoupled, "
                                        "on matrices"),
)

SCHEDULES = (
    ScheduleSpec("constant", constant, "the base learning rate throughout"),
    ScheduleSpec("cosine", cosine, "linear warmup, then cosine decay to min_factor"),
    ScheduleSpec("step", step_decay, "linear warmup, then times gamma every step_every steps"),
)


@hookimpl
def register_optimizers(register: Callable[[OptimizerSpec], None]) -> None:
    for spec in OPTIMIZERS:
        register(spec)


@hookimpl
def register_schedules(register: Callable[[ScheduleSpec], None]) -> None:
    for spec in SCHEDULES:
        register(spec)
