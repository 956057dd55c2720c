"""``--budget`` and ``--target``: what every combination of a run trains for, and toward.

A budget is one of :data:`harness.plan.recipe.BUDGETS` with a number (``tokens=1.2e6``,
``steps=5000``, ``seconds=60``, ``epochs=500``); it becomes recipe fields, so it is the
same for every combination and recorded with the run. A target names a metric that
validation measures and the value to reach (``valid_bpc=2.2``).
"""

from __future__ import annotations

import math
from typing import Any

from harness.errors import ConfigError
from harness.plan.recipe import BUDGETS, TARGET_METRICS

_FIELDS = {"tokens": "budget_tokens", "steps": "budget_steps", "seconds": "budget_seconds",
           "epochs": "epochs"}


def _pair(text: str, option: str, example: str) -> tuple[str, float]:
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"{option} takes NAME=NUMBER (e.g. {example}), got {text!r}")
    try:
        number = float(value.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{option} {name.strip()}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{option} {name.strip()}: must be a positive number, got {value.strip()}")
    return name.strip(), number


def parse_budget(text: str) -> dict[str, Any]:
    """``tokens=1.2e6`` as recipe overrides (``{"budget_tokens": 1200000}``); a one-line
    ConfigError for an unknown unit or a bad number."""
    unit, number = _pair(text, "--budget", "tokens=1200000")
    if unit not in BUDGETS:
        raise ConfigError(f"--budget: unknown unit {unit!r}; choose from: {', '.join(BUDGETS)}")
    if unit == "seconds":
        return {"budget_seconds": number}
    if number != int(number) or number > 10**15:
        raise ConfigError(f"--budget {unit}: must be a whole number, got {number:g}")
    return {_FIELDS[unit]: int(number)}


def parse_target(text: str) -> dict[str, Any]:
    """``valid_bpc=2.2`` as recipe overrides; a one-line ConfigError for a metric that
    validation does not measure or a bad number."""
    metric, number = _pair(text, "--target", "valid_bpc=2.2")
    if metric not in TARGET_METRICS[1:]:
        raise ConfigError(f"--target: {metric!r} is not a metric validation measures; "
                          f"choose from: {', '.join(TARGET_METRICS[1:])}")
    return {"target_metric": metric, "target_value": number}
