"""Run one combination from a plan and turn the outcome into a record.

Whatever happens inside the model or sampler, this returns an :class:`Outcome`: a raised
exception becomes a ``failed`` record carrying its error and traceback, so one broken
combination never stops or loses the others.
"""

from __future__ import annotations

import time
import traceback as tb
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from harness.plan import Combination, Plan
from harness.registry import Registry
from harness.trainer import seed_everything, train


@dataclass
class Outcome:
    """A finished combination: its record, its per-epoch curve, and a traceback if it failed."""

    record: dict[str, Any]
    curve: list[dict[str, Any]]
    traceback: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_combination(plan: Plan, combo: Combination, registry: Registry, quiet: bool) -> Outcome:
    """Train ``combo`` from its own seed (so results never depend on the order of work)."""
    record: dict[str, Any] = {"key": combo.key, **asdict(combo), "started": _now()}
    started = time.perf_counter()
    try:
        rng = seed_everything(combo.seed)
        sampler = registry.sampler(combo.sampler)
        model = registry.model(combo.model).factory(
            len(plan.dataset.vocab), plan.recipe.model_settings(), plan.device
        )
        result = train(
            model, sampler, plan.dataset, plan.recipe, plan.device, rng,
            prefixes=plan.task.prefixes, num_preds=plan.task.num_preds,
            label=f"{combo.model}/{combo.sampler}/seed{combo.seed}", quiet=quiet,
        )
    except Exception as error:  # noqa: BLE001 - a plugin's failure is recorded, not raised
        record.update(status="failed", error=f"{type(error).__name__}: {error}",
                      wall_seconds=time.perf_counter() - started, finished=_now())
        return Outcome(record, [], tb.format_exc())
    record.update(
        status=result.status,
        train_ppl=result.train_ppl,
        valid_ppl=result.valid_ppl,
        tokens_per_sec=result.tokens_per_sec,
        wall_seconds=time.perf_counter() - started,
        train_seconds=result.train_seconds,
        num_params=result.num_params,
        carries_state=sampler.carries_state,
        samples=result.samples,
        error=result.error,
        finished=_now(),
    )
    return Outcome(record, [asdict(point) for point in result.curve])
