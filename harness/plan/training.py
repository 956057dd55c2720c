"""What a run trains with, checked against its task and plugins before anything trains.

Held-out features (budgets other than epochs, a validation cadence in tokens, targets)
need a task with fixed splits; a count model needs one too (it is fitted on the training
split and scored held out). The optimizer and schedule must be registered, and a setting
the chosen optimizer does not take is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.data.taskfile import Task
from harness.errors import ConfigError
from harness.plan.recipe import Recipe
from harness.plugin.registry import Registry


def declared_settings(registry: Registry, models: Iterable[str]) -> dict[str, type]:
    """The settings ``models`` declare of their own (name -> type), for ``--set``."""
    declared: dict[str, type] = {}
    for name in models:
        for option in registry.model(name).options:
            declared.setdefault(option.name, option.type)
    return declared


def check_training(registry: Registry, *, task: Task, models: Iterable[str],
                   recipes: Iterable[Recipe]) -> None:
    """ConfigError (one line) for the first recipe or model the task or plugins cannot
    train: see the module's docstring."""
    held_out = task.splits is not None
    for name in models:
        if registry.model(name).trained_by == "counts" and not held_out:
            raise ConfigError(f"model {name!r} is a count model, fitted once and scored on "
                              f"held-out text: it needs a task with [splits] (task "
                              f"{task.name} has none; try --task timemachine-full)")
    for recipe in recipes:
        optimizer = registry.optimizer(recipe.optimizer)
        registry.schedule(recipe.schedule)
        if recipe.weight_decay and not optimizer.takes_weight_decay:
            raise ConfigError(f"optimizer {optimizer.name!r} takes no weight decay, but "
                              f"weight_decay={recipe.weight_decay:g} was given")
        split_only = [option for option, given in (
            ("--budget tokens", recipe.budget_tokens), ("--budget steps", recipe.budget_steps),
            ("--budget seconds", recipe.budget_seconds), ("eval_tokens", recipe.eval_tokens),
            ("--target", recipe.target_metric)) if given]
        if split_only and not held_out:
            verb = "needs" if len(split_only) == 1 else "need"
            raise ConfigError(f"{', '.join(split_only)} {verb} a task with [splits] (task "
                              f"{task.name} trains d2l's way, for --epochs; try --task "
                              "timemachine-full)")
        if recipe.stop_at_target and not recipe.target_metric:
            raise ConfigError("--stop-at-target needs --target METRIC=X")
        if recipe.schedule != "constant" and recipe.budget_seconds \
                and not (recipe.budget_tokens or recipe.budget_steps):
            raise ConfigError(f"schedule {recipe.schedule!r} needs to know how many steps "
                              "it spans: give --budget tokens=N or steps=N (a seconds budget "
                              "does not say)")
