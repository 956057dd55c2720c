"""Hyper-parameter grids: ``--set hidden=256,512 --set lr=0.5,1`` multiplies a run's grid.

A grid maps recipe fields to the values to try. Every point of the grid (one value per
field, all combinations of them) is trained with every model, sampler and seed; a point is
a combination's ``settings``, overriding the run's recipe for that combination only, and
its record carries them as a ``settings`` mapping, so reports and compare group by them.

Names are :class:`~harness.plan.recipe.Recipe` fields or the command line's short names for
them (``hidden``/``hiddens``, ``layers``, ``steps``, ``batch-size``), or a setting a chosen
model declares (:class:`~harness.plugin.contracts.ModelOption`, e.g. the n-gram's
``order``); values are parsed with the field's or the option's type. The fields that decide which tokens are trained and validated on
(``max_tokens``, ``valid_tokens``) cannot vary within a run: the run has one dataset.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import get_type_hints

from harness.errors import ConfigError
from harness.plan.recipe import Recipe

Value = int | float | str
Point = tuple[tuple[str, Value], ...]
"""One point of a grid: (field, value) pairs in the grid's order."""

ALIASES = {"hidden": "num_hiddens", "hiddens": "num_hiddens", "layers": "num_layers",
           "steps": "num_steps"}
"""Short names (the command line's options) for recipe fields."""

FIXED = {"max_tokens": "the training tokens", "valid_tokens": "the validation tokens"}
"""Recipe fields a grid cannot vary, and what they decide (one dataset per run)."""

_TYPES: dict[str, type] = {name: hint for name, hint in get_type_hints(Recipe).items()}


def grid_fields() -> list[str]:
    """The recipe fields a grid may vary."""
    return [f.name for f in fields(Recipe) if f.name not in FIXED and f.name != "model_options"]


def _valid_names() -> str:
    short = {field: sorted(a for a, f in ALIASES.items() if f == field)
             for field in ALIASES.values()}
    return ", ".join(f"{name} ({'/'.join(short[name])})" if name in short else name
                     for name in grid_fields())


def resolve_name(name: str, declared: Mapping[str, type] | None = None) -> str:
    """The recipe field ``name`` stands for (an alias, dashes for underscores), or the
    model setting of that name in ``declared`` (name -> type)."""
    cleaned = name.strip().replace("-", "_")
    if declared and cleaned in declared and cleaned not in _TYPES:
        return cleaned
    field = ALIASES.get(cleaned, cleaned)
    if field in FIXED:
        raise ConfigError(f"--set {name}: {FIXED[field]} cannot vary within a run (a run has "
                          f"one dataset); start one run per value of --{field.replace('_', '-')}")
    if field not in grid_fields():
        models = f"; the chosen models' own: {', '.join(sorted(declared))}" if declared else ""
        raise ConfigError(f"--set: unknown setting {name!r}; choose from: {_valid_names()}"
                          f"{models}")
    return field


def parse_value(field: str, value: object, declared: Mapping[str, type] | None = None) -> Value:
    """``value`` (text from the command line, or a Python value) as ``field``'s type (a
    recipe field's, or a declared model setting's)."""
    kind = _TYPES[field] if field in _TYPES else (declared or {})[field]
    if kind is bool:
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ConfigError(f"--set {field}: {value!r} is not true or false")
    if isinstance(value, bool):
        raise ConfigError(f"--set {field}: {value!r} is not {_kind_name(kind)}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"--set {field}: {text!r} is not {_kind_name(kind)}") from None
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    raise ConfigError(f"--set {field}: {value!r} is not {_kind_name(kind)}")


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number"}.get(kind, "a text")


def normalize_grid(grid: Mapping[str, Sequence[object]] | None, *,
                   declared: Mapping[str, type] | None = None) -> dict[str, tuple[Value, ...]]:
    """A grid with recipe-field names (or ``declared`` model settings: name -> type) and
    typed, distinct values; ConfigError otherwise."""
    result: dict[str, tuple[Value, ...]] = {}
    for name, values in (grid or {}).items():
        field = resolve_name(name, declared)
        if field in result:
            raise ConfigError(f"--set {field} is given twice; list all its values in one "
                              f"--set {field}=A,B")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"--set {field}: give a list of values, got {values!r}")
        parsed = [parse_value(field, v, declared) for v in values]
        for value in parsed:
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--set {field}: {value!r} is not a finite number")
        repeated = sorted({str(v) for v in parsed if parsed.count(v) > 1})
        if repeated:
            raise ConfigError(f"--set {field}: {', '.join(repeated)} given more than once")
        result[field] = tuple(parsed)
    return result


def parse_set_options(options: Sequence[str]) -> dict[str, list[str]]:
    """``["hidden=256,512", "lr=0.5,1"]`` (repeated ``--set``) as a grid of text values."""
    grid: dict[str, list[str]] = {}
    for option in options:
        name, sep, values = option.partition("=")
        items = [v.strip() for v in values.split(",")]
        if not sep or not name.strip() or not all(items):
            raise ConfigError(f"--set takes NAME=VALUE[,VALUE...], got {option!r}")
        if name.strip() in grid:
            raise ConfigError(f"--set {name.strip()} is given twice; list all its values in "
                              f"one --set {name.strip()}=A,B")
        grid[name.strip()] = items
    return grid


def grid_points(grid: Mapping[str, Sequence[Value]]) -> list[Point]:
    """Every point of ``grid`` (the cartesian product, first field outermost); one empty
    point for an empty grid, so a run without ``--set`` has exactly its plain combinations."""
    names = list(grid)
    return [tuple(zip(names, values)) for values in itertools.product(*grid.values())]


def describe_point(point: Point) -> str:
    """``num_hiddens=256, lr=0.5``: a point for people."""
    return ", ".join(f"{name}={value}" for name, value in point)
