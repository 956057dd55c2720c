"""Continuing a run that stopped: its plan comes back from its manifest, and only the
combinations without a record (optionally also the failed ones) run again.

The manifest's ``plan`` block holds what rebuilding the plan needs beyond ``settings``:
the task's reference (a shipped name or a task file's absolute path), the exact list of
combinations (each with its ``--set`` settings; ``settings`` holds the grid), and whether
checkpoints are saved. The corpus must still have the sha1 the
run started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.plan import Combination, Plan, build_plan
from harness.registry import Registry

RETRYABLE = ("failed", "crashed", "timeout")
"""Statuses ``--retry-failed`` runs again (``diverged`` is deterministic: it would again)."""


def plan_manifest(plan: Plan, save_checkpoints: bool) -> dict[str, Any]:
    """The manifest's ``plan`` block."""
    return {"task": plan.task_ref, "combinations": [c.to_dict() for c in plan.combinations],
            "save_checkpoints": save_checkpoints}


def load_plan(manifest: dict[str, Any], registry: Registry, where: Path) -> tuple[Plan, bool]:
    """The plan a run was started with, and whether it saves checkpoints; ConfigError if
    the manifest lacks it or the corpus has changed since."""
    try:
        stored, settings = manifest["plan"], manifest["settings"]
        combos = tuple(Combination.from_dict(c) for c in stored["combinations"])
        corpus = Path(settings["corpus"]["path"])
        plan = build_plan(registry, combos, stored["task"], settings["recipe"], corpus,
                          settings["device"], settings.get("grid"))
        expected = settings["corpus"]["sha1"]
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{where}: the manifest holds no resumable plan "
                          f"({type(error).__name__}: {error})") from None
    if plan.dataset.sha1 != expected:
        raise ConfigError(f"corpus {corpus} has sha1 {plan.dataset.sha1}, but the run in "
                          f"{where} was trained on sha1 {expected}")
    return plan, bool(stored.get("save_checkpoints"))


def remaining(plan: Plan, records: list[dict[str, Any]],
              retry_failed: bool = False) -> list[Combination]:
    """The plan's combinations still to run, in plan order."""
    status = {r["key"]: r.get("status") for r in records}
    again = RETRYABLE if retry_failed else ()
    return [c for c in plan.combinations if c.key not in status or status[c.key] in again]
