"""The one gate: a :class:`RunRequest` is checked field by field and becomes a :class:`Plan`.

Every refusal is a one-line :class:`ConfigError`, raised before a run directory exists or
anything trains: the executor choice, seeds, names, the grid, the recipe, the task and its
corpus, the device, that the data holds a minibatch, that the output directory is
writable, and that every model accepts its settings (a dry run on the meta device, for
every executor) and can train in its precision on the device (one real forward and
backward, :mod:`harness.plan.probe`).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable
from pathlib import Path

from harness.data.taskfile import load_task
from harness.errors import ConfigError
from harness.machine.determinism import make_thread_invariant
from harness.numbers import check_number, check_seed
from harness.plan.dryrun import DRY_RUN_SECONDS, check_models_isolated, check_plan
from harness.plan.grid import grid_points, normalize_grid
from harness.plan.plan import Combination, Plan, build_plan
from harness.plan.probe import warn_emulated_bf16
from harness.plan.training import declared_settings
from harness.plan.track import check_track
from harness.plan.request import EXECUTORS, ExecutorChoice, RunRequest
from harness.plugin.registry import Registry

MAX_TIMEOUT = 24 * 24 * 3600
"""The longest ``--timeout`` in seconds, 24 days: the process executor waits with
``poll()``, whose limit is 2**31 - 1 milliseconds (24.8 days)."""

RAY_MISSING = ("--executor ray needs Ray, which is not installed: pip install "
               "'rnn-harness[ray]' (or pip install 'ray>=2.40')")

MAX_COMBINATIONS = 100_000
"""More combinations than any machine trains; a larger grid is a typo, refused at once."""


def plan_run(request: RunRequest, registry: Registry, *, isolated: bool | None = None,
             seconds: float | None = None) -> Plan:
    """Check ``request`` and build its plan; ConfigError naming the first problem.

    ``isolated``: whether the run keeps plugin code out of this process, so the model dry
    run must too (None: whenever the request's executor is not serial); ``seconds``: the
    time a combination may take, which bounds that dry run too (None: the request's).
    """
    check_executor(request.executor)
    check_track(request.track, registry)
    if request.reproducible:  # before this process makes any matrix product
        make_thread_invariant()
    seeds = request_seeds(request)
    models = _names(request.models, "models", registry.models.names(),
                    lambda: load_task(request.task).default_models)
    samplers = _names(request.samplers, "samplers", registry.samplers.names(),
                      lambda: load_task(request.task).default_samplers)
    if tuple(request.models or ()) == ("all",) and load_task(request.task).splits is None:
        # 'all' on d2l's kind of task: every model that can train there (no count model)
        models = [m for m in models if registry.model(m).trained_by == "gradient"]
    for name in models:
        registry.model(name)
    for name in samplers:
        registry.sampler(name)
    grid = normalize_grid(request.grid, declared=declared_settings(registry, models))
    both = sorted(name for name in grid if request.recipe.get(name) is not None)
    if both:
        raise ConfigError(f"{', '.join(both)} given both as an option and in --set; "
                          "use one or the other")
    count = len(seeds) * len(models) * len(samplers) * math.prod(map(len, grid.values()))
    if count > MAX_COMBINATIONS:
        raise ConfigError(f"the run would have {count} combinations; at most "
                          f"{MAX_COMBINATIONS} are allowed")
    combos = tuple(Combination(m, s, seed, point) for seed in seeds for m in models
                   for s in samplers for point in grid_points(grid))
    plan = build_plan(registry, combos, task=request.task, overrides=dict(request.recipe),
                      corpus=request.corpus, device=request.device, grid=grid,
                      quiet=request.quiet, reproducible=request.reproducible)
    if isolated is None:
        isolated = request.executor.resolved_kind != "serial"
    dry_run(plan, registry, isolated=isolated, seconds=seconds or request.executor.timeout)
    check_writable(request.output_dir)
    return plan


def dry_run(plan: Plan, registry: Registry, *, isolated: bool,
            seconds: float | None = None) -> None:
    """Every model of ``plan`` built and run once on the meta device, then probed once
    per precision on the plan's device (:func:`harness.plan.dryrun.check_plan`): here, or
    where the run keeps plugin code out of this process (``isolated``) in a child process
    given at most ``seconds`` (a combination's time limit) and :data:`DRY_RUN_SECONDS`.
    Then a warning if bf16 is emulated on this CPU."""
    if isolated and registry.loader is not None:
        limit = min([s for s in (seconds,) if _positive(s)] + [DRY_RUN_SECONDS])
        check_models_isolated(plan, registry.loader, seconds=limit)
    else:
        check_plan(plan, registry)
    warn_emulated_bf16(plan)


def _positive(seconds: object) -> bool:
    """A time limit worth waiting for (the executor itself refuses one that is not)."""
    return isinstance(seconds, (int, float)) and 0 < seconds < math.inf


def check_executor(choice: ExecutorChoice) -> None:
    """ConfigError unless the options go together and each number is in range."""
    if choice.kind is not None and choice.kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {choice.kind!r}; choose from: {', '.join(EXECUTORS)}")
    kind = choice.resolved_kind
    if kind == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(RAY_MISSING)
    if kind != "ray" and (choice.address is not None or choice.cpus_per_task is not None):
        raise ConfigError("--address and --cpus-per-task go with --executor ray")
    if kind == "ray" and choice.jobs is not None:
        raise ConfigError("--jobs is the process executor's; with --executor ray each "
                          "combination is a task of --cpus-per-task CPUs, and Ray runs as "
                          "many at once as the cluster has room for")
    if kind == "serial" and (choice.jobs is not None or choice.timeout is not None
                             or choice.isolate):
        raise ConfigError("--jobs, --timeout and --isolate need worker processes; use "
                          "--executor processes (or ray), not serial")
    if choice.jobs is not None:
        check_number(choice.jobs, name="--jobs", integer=True, minimum=1)
    if choice.cpus_per_task is not None:
        check_number(choice.cpus_per_task, name="--cpus-per-task", integer=True, minimum=1)
    check_timeout(choice.timeout)


def check_timeout(seconds: float | None) -> None:
    """ConfigError unless ``seconds`` is None (no limit) or a number of seconds in
    (0, :data:`MAX_TIMEOUT`]."""
    if seconds is not None:
        check_number(seconds, name="--timeout", above=0, maximum=MAX_TIMEOUT, unit="seconds")


def request_seeds(request: RunRequest) -> list[int]:
    """The seeds to run: ``seeds`` (repeats dropped), ``range(repeats)``, or seed 0."""
    if request.repeats is not None:
        if request.seeds is not None:
            raise ConfigError("give --seed/--seeds or --repeats, not both")
        check_number(request.repeats, name="--repeats", integer=True, minimum=1,
                     maximum=MAX_COMBINATIONS)
        return list(range(request.repeats))
    if request.seeds is None:
        return [0]
    if isinstance(request.seeds, (str, bytes)) or not isinstance(request.seeds, Iterable):
        raise ConfigError(f"seeds must be a list of integers, got {request.seeds!r}")
    if not request.seeds:
        raise ConfigError("at least one seed is needed")
    return list(dict.fromkeys(check_seed(seed, name="--seed") for seed in request.seeds))


def _names(given: tuple[str, ...] | None, option: str, available: list[str],
           defaults: object) -> list[str]:
    """Names as asked: None is the task's defaults, ``("all",)`` every registered one; a
    name given twice runs once."""
    if given is None:
        given = tuple(defaults())  # type: ignore[operator]
        if not given:
            raise ConfigError(f"the task names no default {option}; give --{option} "
                              f"(choose from: {', '.join(available)})")
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise ConfigError(f"{option} must be a list of names, got {given!r}")
    if tuple(given) == ("all",):
        return list(available)
    names = list(dict.fromkeys(given))
    if not names:
        raise ConfigError(f"--{option} is empty; give {option[:-1]} names or 'all' "
                          f"(choose from: {', '.join(available)})")
    return names


def check_writable(root: Path) -> None:
    """ConfigError if run directories cannot be created under ``root``. Nothing is made:
    ``root`` if it exists, else its nearest existing parent, must be a writable folder."""
    existing = Path(root).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output directory {root} is not writable ({existing} is not a "
                          "directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {root} is not writable (permission denied on "
                          f"{existing})")
