"""Run one combination from a plan and turn the outcome into a record.

Whatever happens inside the model or sampler, this returns an :class:`Outcome`: a raised
exception becomes a ``failed`` record with its traceback, so one broken combination never
stops or loses the others. A combination whose worker died or ran past its time gets its
record from :func:`lost_outcome` (statuses: :data:`harness.results.schema.STATUSES`).
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import torch

from harness.results.checkpoints import encode_weights
from harness.machine.device import available_cores, precision_autocast
from harness.plan.plan import Combination, Plan
from harness.plugin.registry import Registry
from harness.machine.determinism import thread_dependent_parameters, warm_up_math
from harness.results.schema import Record
from harness.plan.recipe import Recipe
from harness.plugin.contracts import ModelSpec, SamplerSpec, Workload
from harness.results.efficiency import interval_rates, throughput_spread
from harness.train.heldout import schedule_settings, train_heldout
from harness.results.losses import encode_losses
from harness.train.optimizers import build_optimizer, build_scheduler
from harness.train.trainer import seed_everything, train

@dataclass
class Outcome:
    """A finished combination: its record, its per-epoch curve, a traceback if it failed,
    and its trained weights (``torch.save`` bytes) when checkpoints were asked for."""

    record: Record
    curve: list[dict[str, Any]]
    traceback: str | None = None
    checkpoint: bytes | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_record(combo: Combination, *, status: str = "ok", started: str | None = None) -> Record:
    """A record of ``combo`` that knows only what it is and when it started."""
    return Record(key=combo.key, model=combo.model, sampler=combo.sampler, seed=combo.seed,
                  settings=dict(combo.settings), status=status, started=started or _now())


def run_combination(plan: Plan, combo: Combination, *, registry: Registry, quiet: bool,
                    save_checkpoint: bool = False,
                    take_lent_threads: Callable[[], None] | None = None) -> Outcome:
    """Train ``combo`` from its own seed (so results never depend on the order of work),
    with its own recipe (the run's, changed by its settings). The record's
    ``torch_threads`` is the thread count of its first epoch; its curve gives each epoch's.

    ``take_lent_threads``, called before every epoch (:func:`harness.train.trainer.train`), lets
    an executor's worker take up cores that others left idle (:mod:`harness.execute.processes`).
    In ``--reproducible`` mode, and whenever threads may be lent, the model is checked
    first (:func:`check_threads`): one whose numbers follow the thread count is lent none,
    and its record and a warning say so.
    """
    record = base_record(combo)
    started = time.perf_counter()
    recipe = plan.recipe_for(combo)
    settings = recipe.model_settings(reproducible=plan.reproducible,
                                     declared=registry.model(combo.model).options)
    try:
        if plan.reproducible or take_lent_threads is not None:
            dependent = check_threads(plan, combo, registry=registry,
                                      lent=take_lent_threads is not None)
            if dependent:
                record = record.with_changes(thread_dependent_parameters=tuple(dependent))
                take_lent_threads = None
        warm_up_math(plan.device)
        rng = seed_everything(combo.seed)
        sampler = registry.sampler(combo.sampler)
        flops = declared_flops(registry.model(combo.model), Workload(
            len(plan.dataset.vocab), settings, recipe.num_steps, sampler.carries_state))
        model = build_model(plan, combo, registry)
        if plan.dataset.bounds is not None:
            return _held_out(plan, combo, record=record, model=model, sampler=sampler,
                             registry=registry, rng=rng, started=started, quiet=quiet,
                             settings=asdict(settings), save_checkpoint=save_checkpoint,
                             flops=flops)
        optimizer = build_optimizer(model, spec=registry.optimizer(recipe.optimizer),
                                    lr=recipe.lr, weight_decay=recipe.weight_decay)
        result = train(
            model, sampler, data=plan.dataset, recipe=recipe, device=plan.device, rng=rng,
            prefixes=plan.task.prefixes, num_preds=plan.task.num_preds,
            label=combo.label, quiet=quiet, between_epochs=take_lent_threads,
            optimizer=optimizer, schedule=_schedule(registry, recipe, optimizer,
                                                    train_tokens=len(plan.dataset.train)),
        )
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a plugin's failure is recorded
        record = record.with_changes(status="failed", error=f"{type(error).__name__}: {error}",
                                     wall_seconds=time.perf_counter() - started, finished=_now())
        return Outcome(record, [], tb.format_exc())
    record = record.with_changes(
        status=result.status,
        metrics={"train_ppl": result.train_ppl, "valid_ppl": result.valid_ppl,
                 "tokens_per_sec": result.tokens_per_sec},
        wall_seconds=time.perf_counter() - started,
        train_seconds=result.train_seconds,
        num_params=result.num_params,
        carries_state=sampler.carries_state,
        model_settings=asdict(settings),
        torch_threads=result.curve[0].threads if result.curve else torch.get_num_threads(),
        generated=result.generated,
        error=result.error,
        finished=_now(),
        extra={"flops_per_token": flops, **throughput_noise(
            [p.tokens_per_sec for p in result.curve], [p.threads for p in result.curve],
            [p.load for p in result.curve])},
    )
    curve = [asdict(point) for point in result.curve]
    return _finish(record, curve, model=model, ok=result.status == "ok",
                   save_checkpoint=save_checkpoint)


def _schedule(registry: Registry, recipe: Recipe, optimizer: torch.optim.Optimizer, *,
              train_tokens: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's learning-rate schedule over the steps its budget allows."""
    return build_scheduler(optimizer, spec=registry.schedule(recipe.schedule),
                           settings=schedule_settings(recipe, train_tokens=train_tokens))


def _held_out(plan: Plan, combo: Combination, *, record: Record, model: torch.nn.Module,
              sampler: SamplerSpec, registry: Registry, rng: Any, started: float,
              settings: dict[str, Any], save_checkpoint: bool, quiet: bool,
              flops: float | None = None) -> Outcome:
    """Train and score ``combo`` on a task with fixed splits (:mod:`harness.train.heldout`)."""
    recipe = plan.recipe_for(combo)
    spec = registry.model(combo.model)
    result = train_heldout(
        model, sampler, data=plan.dataset, recipe=recipe,
        optimizer=registry.optimizer(recipe.optimizer),
        schedule=registry.schedule(recipe.schedule), device=plan.device, rng=rng,
        counts=spec.trained_by == "counts", prefixes=plan.task.prefixes,
        num_preds=plan.task.num_preds, label=combo.label, quiet=quiet)
    record = record.with_changes(
        status=result.status, metrics=result.metrics, error=result.error,
        wall_seconds=time.perf_counter() - started, train_seconds=result.train_seconds,
        num_params=result.num_params, carries_state=sampler.carries_state,
        model_settings=settings, torch_threads=torch.get_num_threads(),
        generated=result.generated, finished=_now(),
        extra={"trained_by": spec.trained_by, "flops_per_token": flops,
               **throughput_noise(*interval_rates(result.curve),
                                  [row.get("load") for row in result.curve]),
               **({"test_nll": encode_losses(result.test_nll)}
                  if result.test_nll is not None else {})})
    return _finish(record, result.curve, model=model, ok=result.status == "ok",
                   save_checkpoint=save_checkpoint)


def declared_flops(spec: ModelSpec, work: Workload) -> float | None:
    """The training FLOPs per token ``spec`` declares for ``work``
    (:attr:`harness.plugin.contracts.ModelSpec.flops_per_token`), or None where it declares
    none; ValueError when the declaration gives no finite number >= 0."""
    if spec.flops_per_token is None:
        return None
    value = spec.flops_per_token(work)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"model {spec.name!r} declares {value!r} training FLOPs per token; "
                         "flops_per_token must give a finite number >= 0")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def throughput_noise(rates: list[float | None], threads: list[int | None],
                     loads: list[float | None]) -> dict[str, Any]:
    """What says whether a combination's tokens/sec can be trusted
    (:mod:`harness.results.efficiency` decides): the spread of its interval throughputs
    ``rates`` (per epoch, or between validations) at each thread count, the highest load
    average sampled while it trained, and the machine's cores (``os.cpu_count()``)."""
    sampled = [load for load in loads if load is not None]
    return {"throughput_spread": throughput_spread(rates, threads),
            "max_load": max(sampled) if sampled else None, "cpu_count": os.cpu_count()}


def _finish(record: Record, curve: list[dict[str, Any]], *, model: torch.nn.Module, ok: bool,
            save_checkpoint: bool) -> Outcome:
    """The outcome, with the trained weights when asked for; a checkpoint that cannot be
    saved fails the combination, not the run."""
    try:
        weights = encode_weights(model) if save_checkpoint and ok else None
    except Exception as error:  # noqa: BLE001 - its failure, not the run's: the run goes on
        # failed, like any combination that did not give what was asked of it: no numbers
        # in the record (only ok rows have them), the curve kept as trained
        record = record.with_changes(status="failed", metrics={},
                                     error=f"trained, but saving its checkpoint failed: "
                                           f"{type(error).__name__}: {error}")
        return Outcome(record, curve, tb.format_exc())
    return Outcome(record, curve, checkpoint=weights)


def build_model(plan: Plan, combo: Combination, registry: Registry) -> torch.nn.Module:
    """``combo``'s model, new, with its settings, on the plan's device."""
    spec = registry.model(combo.model)
    settings = plan.recipe_for(combo).model_settings(reproducible=plan.reproducible,
                                                     declared=spec.options)
    return spec.factory(len(plan.dataset.vocab), settings, plan.device)


def thread_dependence(plan: Plan, combo: Combination, *, registry: Registry,
                      threads: int) -> list[str]:
    """The parameters of ``combo``'s model whose gradient over one minibatch of the plan's
    shape and precision differs between 1 and ``threads`` threads
    (:func:`harness.machine.determinism.thread_dependent_parameters`); empty off the CPU, whose
    threads are what it is about. It seeds torch, so call it before the combination's
    own seeding."""
    if plan.device.type != "cpu" or registry.model(combo.model).trained_by != "gradient":
        return []  # threads matter for the CPU's products, and a count model has none
    recipe = plan.recipe_for(combo)
    vocab_size = len(plan.dataset.vocab)
    torch.manual_seed(combo.seed)
    model = build_model(plan, combo, registry)
    generator = torch.Generator().manual_seed(combo.seed)
    X, Y = (torch.randint(0, vocab_size, (recipe.batch_size, recipe.num_steps),
                          generator=generator) for _ in range(2))
    with precision_autocast(torch.device("cpu"), recipe.precision):
        return thread_dependent_parameters(model, X=X, Y=Y, threads=threads)


def check_threads(plan: Plan, combo: Combination, *, registry: Registry,
                  lent: bool) -> list[str]:
    """The parameters of ``combo``'s model that train to other numbers on another thread
    count, checked between 1 thread and every core this process may use (at least 2); if
    any, a warning goes to stderr (``lent``: the combination was to be lent threads, and is
    not). A model that fails the check is not flagged: its training, which comes next,
    reports the failure."""
    try:
        found = thread_dependence(plan, combo, registry=registry,
                                  threads=max(2, available_cores()))
    except Exception:  # noqa: BLE001 - the run itself will tell
        return []
    if found:
        mode = " even in --reproducible mode" if plan.reproducible else ""
        print(f"harness: warning: {combo.label}: the gradients of {', '.join(found)} depend "
              f"on the thread count{mode}, so its numbers may differ from a run on another "
              f"number of threads{'; it is lent no cores' if lent else ''}", file=sys.stderr)
    return found


def lost_outcome(combo: Combination, *, status: str, error: str, wall_seconds: float) -> Outcome:
    """The record of a combination that never reported back: its process ``crashed``, or
    was killed at its ``timeout``, ``wall_seconds`` after it started. The error doubles as
    its errors/ file."""
    finished = datetime.now(timezone.utc)
    started = finished - timedelta(seconds=wall_seconds)
    record = base_record(combo, status=status, started=started.isoformat(timespec="seconds"))
    record = record.with_changes(error=error, wall_seconds=wall_seconds,
                                 finished=finished.isoformat(timespec="seconds"))
    return Outcome(record, [], f"{combo.label}: {error}\n")


@dataclass
class Job:
    """Everything needed to run any combination of one plan, as a picklable callable.

    An executor calls ``job(combo)`` here, or sends the job to another process and calls
    it there: unpickled, it loads the plugins again through ``loader`` (the registry
    itself, holding plugin code, never travels).
    """

    plan: Plan
    loader: Callable[[], Registry] | None
    """Picklable; normally the registry's own ``loader``."""
    quiet: bool = False
    save_checkpoints: bool = False
    registry: Registry | None = field(default=None, repr=False, compare=False)
    take_lent_threads: Callable[[], None] | None = field(default=None, repr=False,
                                                         compare=False)
    """See :func:`run_combination`; set where the job runs, never sent with it."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "registry": None, "take_lent_threads": None}

    def quietly(self) -> Job:
        """The same job without progress bars (for workers sharing one terminal)."""
        return replace(self, quiet=True)

    def prepare(self) -> Registry:
        """Load the plugins now if not yet (a worker does this before it is timed)."""
        if self.registry is None:
            if self.loader is None:
                raise RuntimeError("a Job needs a registry or a loader")
            self.registry = self.loader()
            # torch imports torch._dynamo on the first optimizer it builds, which is slow:
            # pay that here, so no --timeout or first-epoch timing includes it.
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        return self.registry

    def __call__(self, combo: Combination) -> Outcome:
        return run_combination(self.plan, combo, registry=self.prepare(), quiet=self.quiet,
                               save_checkpoint=self.save_checkpoints,
                               take_lent_threads=self.take_lent_threads)
