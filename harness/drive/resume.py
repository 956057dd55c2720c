"""Continuing a run that stopped: its plan comes back from its manifest, and only the
combinations without a record (optionally also the failed ones) run again.

The manifest's ``plan`` block holds what rebuilding the plan needs beyond ``settings``:
the task reference, the task's tokenizer and prompts, the exact combinations, and whether
checkpoints are saved. The corpus is found where the run found it, else in
``$HARNESS_CORPUS``, else as a new run would; it must have the run's sha1, and the task
must tokenise it as it did then.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from harness.data.corpus import CORPUS_ENV
from harness.data.references import short_repr
from harness.errors import ConfigError, CorpusError
from harness.plan.plan import Combination, Plan, build_plan
from harness.plugin.registry import Registry
from harness.results.schema import Manifest, Record, RunSettings

RETRYABLE = ("failed", "crashed", "timeout")
"""Statuses ``--retry-failed`` runs again (``diverged`` is deterministic: it would again)."""


def plan_manifest(plan: Plan, save_checkpoints: bool) -> dict[str, Any]:
    """The manifest's ``plan`` block."""
    return {"task": plan.task_ref, "task_settings": task_settings(plan),
            "combinations": [c.to_dict() for c in plan.combinations],
            "save_checkpoints": save_checkpoints}


def task_settings(plan: Plan) -> dict[str, Any]:
    """What of the task decides a combination's numbers and text, beyond the corpus and
    the recipe that ``settings`` holds: a task file edited between a run and its
    resumption must not train the rest of the run on other terms."""
    task = plan.task
    return {"tokenizer": task.tokenizer, "prefixes": list(task.prefixes),
            "num_preds": task.num_preds}


def run_settings(plan: Plan) -> RunSettings:
    """What defines the run's results, as the manifest's ``settings`` holds it."""
    combos = plan.combinations
    return RunSettings(
        task=plan.task.name, models=tuple(sorted({c.model for c in combos})),
        samplers=tuple(sorted({c.sampler for c in combos})),
        seeds=tuple(sorted({c.seed for c in combos})), grid=dict(plan.grid),
        device=str(plan.device), recipe=plan.recipe.to_dict(), corpus=plan.dataset.info())


def load_plan(manifest: Manifest, registry: Registry, *, where: Path,
              quiet: bool = False) -> tuple[Plan, bool]:
    """The plan a run was started with, and whether it saves checkpoints; ConfigError if
    the manifest lacks it, or the corpus or the task has changed since. ``quiet``: a
    corpus download is not announced on stderr."""
    try:
        stored, settings = manifest.plan, manifest.settings
        combos = tuple(Combination.from_dict(c) for c in stored["combinations"])
        corpus = Path(settings.corpus["path"])
        expected = settings.corpus["sha1"]
        if not isinstance(stored["task"], str):  # told as a KeyError is, below
            raise TypeError(f"plan.task is {short_repr(stored['task'])}, not a task name "
                            "or path")
        rebuild = partial(build_plan, registry, combos, task=stored["task"],
                          overrides=dict(settings.recipe), device=settings.device,
                          grid=dict(settings.grid), quiet=quiet,
                          reproducible=manifest.reproducible)
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{where}: the manifest holds no resumable plan "
                          f"({type(error).__name__}: {error})") from None
    if corpus.is_file():
        plan = rebuild(corpus=corpus)
    else:
        moved = os.environ.get(CORPUS_ENV)  # as --corpus would (refused with --resume)
        try:
            plan = rebuild(corpus=Path(moved) if moved else None)
        except CorpusError as error:
            hint = "" if CORPUS_ENV in str(error) else f"; point at a copy with {CORPUS_ENV}=PATH"
            raise CorpusError(f"the run's corpus {corpus} is not there (a relative path is "
                              f"to where the run started) and no copy was found: {error}{hint}"
                              ) from None
    if plan.dataset.sha1 != expected:
        raise ConfigError(f"corpus {plan.dataset.path} has sha1 {plan.dataset.sha1}, but the "
                          f"run in {where} was trained on sha1 {expected}")
    then = {**stored.get("task_settings", {}), **settings.corpus}
    now = {**task_settings(plan), **plan.dataset.info()}
    changed = [f"{key} {then[key]!r} then, {now[key]!r} now" for key in then
               if key not in ("path", "sha1") and key in now and now[key] != then[key]]
    if changed:
        raise ConfigError(f"task {stored['task']} has changed since the run in {where} "
                          f"started ({'; '.join(changed)}); resuming would train the rest "
                          "on other terms")
    return plan, bool(stored.get("save_checkpoints"))


def remaining(plan: Plan, records: list[Record], *,
              retry_failed: bool = False) -> list[Combination]:
    """The plan's combinations still to run, in plan order."""
    status = {r.key: r.status for r in records}
    again = RETRYABLE if retry_failed else ()
    return [c for c in plan.combinations if c.key not in status or status[c.key] in again]
