"""The plan of a run: which combinations to train, with what, validated up front.

Everything that can be wrong with the input (names, numbers, device, corpus) is found
here, before a run directory exists or any training starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.machine.device import resolve_device
from harness.errors import ConfigError
from harness.plan.grid import Point, Value, describe_point, normalize_grid
from harness.names import combination_label, safe_name
from harness.plan.training import check_training, declared_settings
from harness.plan.recipe import Recipe
from harness.plugin.registry import Registry
from harness.data.dataset import Dataset, load_dataset
from harness.data.taskfile import Task, load_task
from harness.plan.fits import check_grid_fits, task_recipe



@dataclass(frozen=True)
class Combination:
    """One unit of work: a model trained with a sampler from a seed, with the recipe
    changed by ``settings`` (its point of a ``--set`` grid; empty without one)."""

    model: str
    sampler: str
    seed: int
    settings: Point = ()

    @property
    def key(self) -> str:
        """A stable, file-name-safe identifier, unique within a run: model, sampler, each
        setting as ``name-value``, seed (``scratch__sequential__lr-0.5__seed0``)."""
        parts = [self.model, self.sampler, *(f"{n}-{v}" for n, v in self.settings)]
        return "__".join([*map(safe_name, parts), f"seed{self.seed}"])

    @property
    def label(self) -> str:
        """How progress lines and errors name it: ``scratch/sequential/lr=0.5/seed0``."""
        return combination_label(self.model, self.sampler, seed=self.seed, settings=self.settings)

    def to_dict(self) -> dict[str, Any]:
        """As records and manifests store it (``settings`` a mapping, in grid order)."""
        return {"model": self.model, "sampler": self.sampler, "seed": self.seed,
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Combination:
        """From :meth:`to_dict`'s form (or a record; other fields are ignored)."""
        return cls(data["model"], data["sampler"], data["seed"],
                   tuple((data.get("settings") or {}).items()))


@dataclass(frozen=True)
class Plan:
    """A validated run: the task, its prepared data, the recipe and the combinations."""

    task: Task
    dataset: Dataset
    recipe: Recipe
    device: torch.device
    combinations: tuple[Combination, ...]
    task_ref: str = ""
    """How to load the task again: a shipped task's name, or a task file's absolute path."""
    grid: dict[str, tuple[Value, ...]] = field(default_factory=dict)
    """The ``--set`` grid: recipe field -> values; each combination's ``settings`` is a
    point of it, overriding ``recipe`` (which holds the rest)."""
    reproducible: bool = False
    """Whether the run asked for thread-count-independent numbers (``--reproducible``);
    models learn it through their settings."""

    def recipe_for(self, combo: Combination) -> Recipe:
        """The recipe ``combo`` trains with: the run's, changed by its settings."""
        return self.recipe_at(combo.settings)

    def recipe_at(self, point: Point) -> Recipe:
        """The recipe at ``point`` of the grid: the run's, changed by the point's values."""
        return point_recipe(self.recipe, point)



def build_plan(
    registry: Registry,
    combos: tuple[Combination, ...],
    *,
    task: str = "timemachine",
    overrides: dict[str, object] | None = None,
    corpus: Path | None = None,
    device: str = "auto",
    grid: Mapping[str, Sequence[object]] | None = None,
    quiet: bool = False,
    reproducible: bool = False,
) -> Plan:
    """A plan for exactly ``combos`` (as the gate made them, or as a run's manifest
    stored them for ``--resume``), validated the same way: every combination's recipe
    (the run's, changed by its settings) must be valid and fit the data. The run's own
    recipe must fit only if some combination trains with it unchanged."""
    for combo in combos:
        registry.model(combo.model)
        registry.sampler(combo.sampler)
    keys: dict[str, Combination] = {}
    for combo in combos:
        other = keys.setdefault(combo.key, combo)
        if other != combo:
            raise ConfigError(f"{other} and {combo} would share the file name {combo.key!r}; "
                              "rename one of the plugins' models or samplers")
    loaded = load_task(task)
    recipe = task_recipe(loaded).with_overrides(**(overrides or {}))
    recipe.validate()
    points = list(dict.fromkeys(c.settings for c in combos)) or [()]
    recipes = {point: point_recipe(recipe, point) for point in points}
    check_training(registry, task=loaded, models=dict.fromkeys(c.model for c in combos),
                   recipes=recipes.values())
    resolved = resolve_device(device)
    dataset = load_dataset(loaded, max_tokens=recipe.max_tokens,
                           valid_tokens=recipe.valid_tokens, corpus=corpus, quiet=quiet)
    check_grid_fits(dataset, recipes)
    task_ref = str(Path(task).resolve()) if Path(task).is_file() else task
    declared = declared_settings(registry, dict.fromkeys(c.model for c in combos))
    return Plan(loaded, dataset, recipe, resolved, combos, task_ref,
                normalize_grid(grid, declared=declared),
                reproducible=reproducible)


def point_recipe(recipe: Recipe, point: Point) -> Recipe:
    """``recipe`` changed by ``point`` (the one place a grid point's recipe is made),
    validated; a ConfigError names the point."""
    try:
        changed = recipe.with_point(point)
        changed.validate()
    except ConfigError as error:
        raise ConfigError(f"--set {describe_point(point)}: {error}") from None
    return changed
