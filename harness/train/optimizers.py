"""The optimizer and learning-rate schedule of a training run, built from plugin specs.

A run names an optimizer (:class:`OptimizerSpec`) and a schedule (:class:`ScheduleSpec`) as
it names a model; this module turns them into torch objects. The schedule is a
``LambdaLR``: call its ``step()`` after each ``optimizer.step()``, and the learning rate of
optimizer step ``k`` (0-based) is the base rate times ``spec.factor(k, settings)``.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.errors import ConfigError
from harness.plugin.contracts import (OptimizerSettings, OptimizerSpec, ScheduleSettings,
                                      ScheduleSpec)


def check_optimizer_settings(spec: OptimizerSpec, *, weight_decay: float) -> None:
    """Refuse, with a one-line ConfigError, a nonzero ``weight_decay`` for an optimizer that
    takes none: checked before any run starts, so it never silently does nothing."""
    if weight_decay != 0 and not spec.takes_weight_decay:
        raise ConfigError(f"optimizer {spec.name!r} takes no weight decay, but "
                          f"weight_decay={weight_decay:g} was given: set it to 0 or choose "
                          "another optimizer")


def build_optimizer(model: nn.Module, *, spec: OptimizerSpec, lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """``spec``'s optimizer over ``model``'s trainable parameters (named, in
    ``named_parameters`` order), with base learning rate ``lr`` and ``weight_decay``."""
    check_optimizer_settings(spec, weight_decay=weight_decay)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return spec.factory(params, OptimizerSettings(lr=lr, weight_decay=weight_decay))


def build_scheduler(optimizer: torch.optim.Optimizer, *, spec: ScheduleSpec,
                    settings: ScheduleSettings) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets every group's rate to its base rate times
    ``spec.factor(step, settings)``; built at step 0, so the first step already uses
    ``factor(0, settings)``."""
    factor = spec.factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, settings))
