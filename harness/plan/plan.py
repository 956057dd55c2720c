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

from harness.machine.determinism import reproducible_mode
from harness.machine.device import resolve_device
from harness.errors import ConfigError
from harness.plan.grid import Point, Value, describe_point, grid_points, normalize_grid
from harness.names import combination_label, safe_name
from harness.plan.recipe import Recipe
from harness.plugin.registry import Registry
from harness.data.tasks import Dataset, Task, check_fits, load_dataset, load_task

DEFAULT_MODELS = ("scratch", "nnrnn")
DEFAULT_SAMPLERS = ("sequential", "random", "sequential-reset")


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
        return combination_label(self.model, self.sampler, self.seed, self.settings)

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
        return self.recipe.with_overrides(**dict(combo.settings))

    def settings(self) -> dict[str, object]:
        """What defines the run's results (stored in the manifest)."""
        return {
            "task": self.task.name,
            "models": sorted({c.model for c in self.combinations}),
            "samplers": sorted({c.sampler for c in self.combinations}),
            "seeds": sorted({c.seed for c in self.combinations}),
            "grid": {name: list(values) for name, values in self.grid.items()},
            "device": str(self.device),
            "recipe": self.recipe.to_dict(),
            "corpus": self.dataset.info(),
        }


def split_names(text: str | None, default: tuple[str, ...], available: list[str]) -> list[str]:
    """Parse ``a,b,c`` (or ``all``) into unique names, keeping their order.

    ``None`` (the option not given) is ``default``; a list given but empty (``""``, ``,``)
    comes back empty, for :func:`make_plan` to refuse naming the option, rather than
    quietly running the defaults.
    """
    if text is None:
        return list(default)
    if text.strip() == "all":
        return list(available)
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def make_plan(
    registry: Registry,
    models: list[str],
    samplers: list[str],
    seeds: list[int],
    task: str = "timemachine",
    overrides: dict[str, object] | None = None,
    corpus: Path | None = None,
    device: str = "auto",
    grid: Mapping[str, Sequence[object]] | None = None,
    quiet: bool = False,
) -> Plan:
    """Validate everything and prepare the data; raise ConfigError on the first problem.

    ``grid`` (recipe field or short name -> values, see :mod:`harness.plan.grid`) multiplies
    the combinations: every model, sampler and seed runs at every point of it. ``quiet``:
    a corpus download is not announced on stderr.
    """
    if not models:
        raise ConfigError("--models is empty; give model names or 'all' (choose from: "
                          f"{', '.join(registry.models.names())})")
    if not samplers:
        raise ConfigError("--samplers is empty; give sampler names or 'all' (choose from: "
                          f"{', '.join(registry.samplers.names())})")
    models, samplers = list(dict.fromkeys(models)), list(dict.fromkeys(samplers))
    for name in models:  # a name given twice trains once, from the CLI or the API alike
        registry.model(name)
    for name in samplers:
        registry.sampler(name)
    if not seeds:
        raise ConfigError("at least one seed is needed")
    values = normalize_grid(grid)
    both = sorted(name for name in values if (overrides or {}).get(name) is not None)
    if both:
        raise ConfigError(f"{', '.join(both)} given both as an option and in --set; "
                          "use one or the other")
    combos = tuple(Combination(m, s, seed, point) for seed in seeds for m in models
                   for s in samplers for point in grid_points(values))
    return build_plan(registry, combos, task, overrides, corpus, device, values, quiet)


def build_plan(
    registry: Registry,
    combos: tuple[Combination, ...],
    task: str = "timemachine",
    overrides: dict[str, object] | None = None,
    corpus: Path | None = None,
    device: str = "auto",
    grid: Mapping[str, Sequence[object]] | None = None,
    quiet: bool = False,
) -> Plan:
    """A plan for exactly ``combos`` (as :func:`make_plan` made them, or as a run's manifest
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
    recipe = loaded.recipe.with_overrides(**(overrides or {}))
    recipe.validate()
    points = list(dict.fromkeys(c.settings for c in combos)) or [()]
    recipes = {point: _point_recipe(recipe, point) for point in points}
    resolved = resolve_device(device)
    dataset = load_dataset(loaded, recipe, corpus, quiet)
    _check_fits(dataset, recipes)
    task_ref = str(Path(task).resolve()) if Path(task).is_file() else task
    return Plan(loaded, dataset, recipe, resolved, combos, task_ref, normalize_grid(grid),
                reproducible=reproducible_mode())


def _point_recipe(recipe: Recipe, point: Point) -> Recipe:
    """``recipe`` changed by ``point``, validated; a ConfigError names the point."""
    try:
        changed = recipe.with_overrides(**dict(point))
        changed.validate()
    except ConfigError as error:
        raise ConfigError(f"--set {describe_point(point)}: {error}") from None
    return changed


def _check_fits(dataset: Dataset, recipes: Mapping[Point, Recipe]) -> None:
    """:func:`check_fits` for each point's own recipe (the run's recipe is trained only where
    no ``--set`` changes it); the error names the first point that does not fit, and any
    others, so one fix can cover them all."""
    failures: list[tuple[Point, ConfigError]] = []
    for point, recipe in recipes.items():
        try:
            check_fits(dataset, recipe)
        except ConfigError as error:
            failures.append((point, error))
    if not failures:
        return
    point, error = failures[0]
    if not point:
        raise error
    others = ", ".join(f"({describe_point(p)})" for p, _ in failures[1:])
    also = f"; other points that do not fit: {others}" if others else ""
    raise ConfigError(f"--set {describe_point(point)}: {error}{also}")
