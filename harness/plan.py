"""The plan of a run: which combinations to train, with what, validated up front.

Everything that can be wrong with the input (names, numbers, device, corpus) is found
here, before a run directory exists or any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.device import resolve_device
from harness.errors import ConfigError
from harness.names import safe_name
from harness.recipe import Recipe
from harness.registry import Registry
from harness.tasks import Dataset, Task, load_task, prepare

DEFAULT_MODELS = ("scratch", "nnrnn")
DEFAULT_SAMPLERS = ("sequential", "random", "sequential-reset")


@dataclass(frozen=True)
class Combination:
    """One unit of work: a model trained with a sampler from a seed."""

    model: str
    sampler: str
    seed: int

    @property
    def key(self) -> str:
        """A stable, file-name-safe identifier, unique within a run."""
        return f"{safe_name(self.model)}__{safe_name(self.sampler)}__seed{self.seed}"


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

    def settings(self) -> dict[str, object]:
        """What defines the run's results (stored in the manifest)."""
        return {
            "task": self.task.name,
            "models": sorted({c.model for c in self.combinations}),
            "samplers": sorted({c.sampler for c in self.combinations}),
            "seeds": sorted({c.seed for c in self.combinations}),
            "device": str(self.device),
            "recipe": self.recipe.to_dict(),
            "corpus": self.dataset.info(),
        }


def split_names(text: str | None, default: tuple[str, ...], available: list[str]) -> list[str]:
    """Parse ``a,b,c`` (or ``all``) into unique names, keeping their order."""
    if not text:
        return list(default)
    if text.strip() == "all":
        return list(available)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("empty list of names")
    return list(dict.fromkeys(names))


def make_plan(
    registry: Registry,
    models: list[str],
    samplers: list[str],
    seeds: list[int],
    task: str = "timemachine",
    overrides: dict[str, object] | None = None,
    corpus: Path | None = None,
    device: str = "auto",
) -> Plan:
    """Validate everything and prepare the data; raise ConfigError on the first problem."""
    for name in models:
        registry.model(name)
    for name in samplers:
        registry.sampler(name)
    if not seeds:
        raise ConfigError("at least one seed is needed")
    combos = tuple(Combination(m, s, seed) for seed in seeds for m in models for s in samplers)
    return build_plan(registry, combos, task, overrides, corpus, device)


def build_plan(
    registry: Registry,
    combos: tuple[Combination, ...],
    task: str = "timemachine",
    overrides: dict[str, object] | None = None,
    corpus: Path | None = None,
    device: str = "auto",
) -> Plan:
    """A plan for exactly ``combos`` (as :func:`make_plan` made them, or as a run's manifest
    stored them for ``--resume``), validated the same way."""
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
    resolved = resolve_device(device)
    dataset = prepare(loaded, recipe, corpus)
    task_ref = str(Path(task).resolve()) if Path(task).is_file() else task
    return Plan(loaded, dataset, recipe, resolved, combos, task_ref)
