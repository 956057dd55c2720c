"""What the user asked for, typed, before anything is checked: a :class:`RunRequest`.

The CLI and the Python API both build one; :func:`harness.plan.gate.plan_run` checks it
field by field and turns it into a plan, or refuses it with one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

EXECUTORS = ("serial", "processes", "ray")


@dataclass(frozen=True)
class ExecutorChoice:
    """How combinations are to run. ``kind`` None: serial, unless an option needs worker
    processes (``jobs``, ``timeout``, ``isolate``); None elsewhere means "not given"."""

    kind: str | None = None
    jobs: int | None = None
    timeout: float | None = None
    isolate: bool = False
    address: str | None = None
    """Ray: the cluster to join (``HOST:6379`` or ``auto``); None starts a local Ray."""
    cpus_per_task: int | None = None

    @property
    def resolved_kind(self) -> str:
        """The executor it stands for once the defaults are applied."""
        if self.kind is not None:
            return self.kind
        if self.jobs is None and self.timeout is None and not self.isolate:
            return "serial"
        return "processes"


@dataclass(frozen=True)
class RunRequest:
    """A run as asked for: names, seeds, task, recipe overrides, grid, executor, output,
    trackers."""

    models: tuple[str, ...] | None = None
    """None: the task's default models; ``("all",)``: every registered one."""
    samplers: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    """None: seed 0, or ``range(repeats)``."""
    repeats: int | None = None
    task: str = "timemachine"
    corpus: Path | None = None
    device: str = "auto"
    recipe: Mapping[str, Any] = field(default_factory=dict)
    """Recipe fields to override (``{"epochs": 5}``); None values are ignored."""
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    """``--set``: recipe field (or short name) -> values; every point runs every combination."""
    executor: ExecutorChoice = field(default_factory=ExecutorChoice)
    output_dir: Path = Path("results")
    save_checkpoints: bool = False
    reproducible: bool = False
    """The same numbers on any thread count (oneMKL strict mode; ``--reproducible``)."""
    track: tuple[str, ...] = ()
    """``--track``: observer plugins the run's events go to (``("tensorboard", "mlflow")``;
    :mod:`harness.drive.observers`); they see the results, never change them."""
    quiet: bool = False
    command: str = ""
    """The command line that asked for the run, recorded in the manifest."""

    @classmethod
    def from_options(cls, **options: Any) -> RunRequest:
        """A request from keyword options: request fields by name, the executor's fields
        (``jobs=2``) and recipe fields (``epochs=5``) beside them."""
        own = {f.name for f in fields(cls)}
        executor = {f.name for f in fields(ExecutorChoice)} - {"kind"}
        given = {k: v for k, v in options.items() if k in own}
        choice = {k: options[k] for k in executor if k in options}
        if isinstance(given.get("executor"), ExecutorChoice) and choice:
            raise ConfigError(f"give executor options ({', '.join(sorted(choice))}) in the "
                              "ExecutorChoice, not beside it")
        if isinstance(given.get("executor"), str) or "executor" not in given:
            given["executor"] = ExecutorChoice(kind=given.get("executor"), **choice)
        recipe = {k: v for k, v in options.items() if k not in own and k not in executor}
        if recipe:
            given["recipe"] = {**given.get("recipe", {}), **recipe}
        for name in ("models", "samplers", "seeds", "track"):
            if given.get(name) is not None and not isinstance(given[name], (str, bytes)):
                try:
                    given[name] = tuple(given[name])
                except TypeError:
                    kind = "integers" if name == "seeds" else "names"
                    raise ConfigError(f"{name} must be a list of {kind}, got "
                                      f"{given[name]!r}") from None
        for name in ("output_dir", "corpus"):
            if given.get(name) is not None:
                given[name] = Path(given[name])
        return cls(**given)
