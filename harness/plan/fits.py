"""A task's recipe, and whether its data holds that recipe's minibatches.

The data stage reads a task file's ``[recipe]`` as plain overrides and slices the corpus by
token counts; here they meet the :class:`~harness.plan.recipe.Recipe`: the task's recipe is
built and validated, and each recipe of a run must find at least one minibatch to train on
(and to validate on), so a corpus too short fails before any training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.data.dataset import Dataset, load_dataset
from harness.data.taskfile import Task
from harness.errors import ConfigError
from harness.plan.grid import Point, describe_point
from harness.plan.recipe import Recipe


def task_recipe(task: Task) -> Recipe:
    """The recipe's defaults changed by the task's ``[recipe]`` table, validated; also
    checks that each ``[[reference]]``'s ``settings`` and ``ignore`` name recipe fields (a
    misspelt one would silently never match). The ConfigError names the task file."""
    where = task.origin or task.name
    try:
        recipe = Recipe().with_overrides(**task.recipe)
        recipe.validate()
    except ConfigError as error:
        raise ConfigError(f"task {where}: [recipe] {error}") from None
    known = set(recipe.to_dict())
    for number, reference in enumerate(task.references, start=1):
        entry = f"task {where}: [[reference]] #{number}"
        unknown = sorted(set(reference.ignore) - known)
        if unknown:
            raise ConfigError(f"{entry} ignore names unknown recipe setting(s) "
                              f"{', '.join(unknown)}; choose from: {', '.join(sorted(known))}")
        try:
            recipe.with_overrides(**reference.settings).validate()
        except ConfigError as error:
            raise ConfigError(f"{entry} settings: {error}") from None
    return recipe


def prepare(task: Task, recipe: Recipe, corpus: Path | None = None) -> Dataset:
    """The task's data sliced for ``recipe``, then :func:`check_fits`: a corpus too short
    for one minibatch of ``recipe`` is a ConfigError, raised before any training."""
    dataset = load_dataset(task, max_tokens=recipe.max_tokens,
                           valid_tokens=recipe.valid_tokens, corpus=corpus)
    check_fits(dataset, recipe)
    return dataset


def check_fits(dataset: Dataset, recipe: Recipe) -> None:
    """ConfigError unless the data holds at least one minibatch of ``recipe`` for training
    (and for validation, when it is on); the validation error says which setting to change,
    with the numbers that would fit."""
    needed = recipe.min_train_tokens()
    if len(dataset.train) < needed:
        raise ConfigError(
            f"{dataset.path}: {len(dataset.train)} training tokens, but one minibatch of "
            f"batch_size {recipe.batch_size} x num_steps {recipe.num_steps} needs at least "
            f"{needed}"
        )
    minibatch = recipe.batch_size * recipe.num_steps + 1
    if recipe.valid_tokens and len(dataset.valid) < minibatch:
        raise ConfigError(
            f"{dataset.path}: validation needs one minibatch of batch_size "
            f"{recipe.batch_size} x num_steps {recipe.num_steps} ({minibatch} tokens), but "
            f"{_valid_shortfall(dataset, recipe, minibatch)}, lower --batch-size or --steps, "
            "or set --valid-tokens 0"
        )


def check_grid_fits(dataset: Dataset, recipes: Mapping[Point, Recipe]) -> None:
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


def _valid_shortfall(dataset: Dataset, recipe: Recipe, minibatch: int) -> str:
    """Why validation has fewer than ``minibatch`` tokens, and the first way out: more
    validation tokens, or (when the corpus ends first) fewer training tokens."""
    if len(dataset.valid) == recipe.valid_tokens:
        return (f"--valid-tokens is {recipe.valid_tokens}: raise --valid-tokens to at least "
                f"{minibatch}")
    room = len(dataset.train) + len(dataset.valid) - minibatch
    where = (f"lower --max-tokens to at most {room}" if room >= recipe.min_train_tokens()
             else "use a longer corpus")
    return (f"the corpus has only {len(dataset.valid)} tokens after the "
            f"{len(dataset.train)} training tokens: {where}")
