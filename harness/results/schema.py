"""The run's data, typed: a :class:`Record` per combination and the run's :class:`Manifest`.

Only the store reads and writes their JSON; unknown keys stay in ``extra`` and are written
back, so every run directory loads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from harness.names import combination_label
from harness.metrics import D2L_NAMES, NAMES as METRIC_NAMES

STATUSES = ("ok", "failed", "diverged", "crashed", "timeout")
"""``ok``; ``failed`` (the model or sampler raised); ``diverged`` (non-finite loss);
``crashed`` (its process died); ``timeout`` (it ran past ``--timeout``)."""

RUN_STATUSES = ("running", "complete", "partial", "interrupted", "aborted")
LEGACY_GENERATED = "samples"  # where older run directories store a record's ``generated``


@dataclass(frozen=True)
class Record:
    """One finished combination: what it was, how it ended, what it measured."""

    key: str
    model: str
    sampler: str
    seed: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Its point of a ``--set`` grid (recipe field -> value); empty without one."""
    status: str = "ok"
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    """Metric name (:data:`harness.metrics.METRICS`) -> value; None: not measured."""
    wall_seconds: float | None = None
    train_seconds: float | None = None
    num_params: int | None = None
    carries_state: bool | None = None
    model_settings: Mapping[str, Any] | None = None
    torch_threads: int | None = None
    generated: Mapping[str, str] = field(default_factory=dict)
    """Text generated after training: prefix -> the prefix and its greedy continuation."""
    checkpoint: str | None = None
    """The saved weights, relative to the run directory (``--save-checkpoints``)."""
    thread_dependent_parameters: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        """``scratch/sequential/lr=0.5/seed0``: how progress lines and errors name it."""
        return combination_label(self.model, self.sampler, seed=self.seed, settings=self.settings)

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    def with_changes(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """As ``records.jsonl`` stores it: metrics flat beside the other fields."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "metrics":
                data.update({name: value.get(name) for name in METRIC_NAMES
                             if name in D2L_NAMES or value.get(name) is not None})
                data.update({k: v for k, v in value.items() if k not in METRIC_NAMES})
            elif f.name == "extra":
                data.update(value)
            elif f.name == "thread_dependent_parameters":
                if value:
                    data[f.name] = list(value)
            elif f.name == "checkpoint":
                if value is not None:
                    data[f.name] = value
            else:
                data[f.name] = dict(value) if isinstance(value, Mapping) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        """From a stored line; ValueError if a field the record needs is missing or mistyped."""
        try:
            key, model, sampler, seed = (data[k] for k in ("key", "model", "sampler", "seed"))
        except KeyError as missing:
            raise ValueError(f"record lacks {missing}") from None
        if not all(isinstance(v, str) for v in (key, model, sampler)) \
                or not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("record key, model, sampler or seed has the wrong type")
        known = {f.name for f in fields(cls)} - {"metrics", "extra"}
        if "generated" not in data and LEGACY_GENERATED in data:
            data = {("generated" if k == LEGACY_GENERATED else k): v for k, v in data.items()}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("settings", "generated"):
            if not isinstance(values.get(name) or {}, Mapping):
                raise ValueError(f"record field {name} is not a mapping")
            values[name] = dict(values.get(name) or {})
        values["thread_dependent_parameters"] = tuple(
            values.get("thread_dependent_parameters") or ())
        metrics = {name: _number(data.get(name)) for name in METRIC_NAMES
                   if name in D2L_NAMES or name in data}
        extra = {k: v for k, v in data.items() if k not in known and k not in METRIC_NAMES}
        return _check_record(cls(**values, metrics=metrics, extra=extra))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range: no record the harness writes
        raise ValueError("a metric is an integer too large for a float") from None


@dataclass(frozen=True)
class RunSettings:
    """What defines a run's results: task, names, seeds, grid, device, recipe, corpus."""

    task: str
    models: tuple[str, ...]
    samplers: tuple[str, ...]
    seeds: tuple[int, ...]
    grid: Mapping[str, tuple[Any, ...]]
    device: str
    recipe: Mapping[str, Any]
    corpus: Mapping[str, Any]
    """``path``, ``sha1``, ``vocab_size``, ``train_tokens``, ``valid_tokens``."""

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "models": list(self.models), "samplers": list(self.samplers),
                "seeds": list(self.seeds),
                "grid": {k: list(v) for k, v in self.grid.items()},
                "device": self.device, "recipe": dict(self.recipe), "corpus": dict(self.corpus)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSettings:
        return cls(task=str(data.get("task", "")), models=tuple(data.get("models") or ()),
                   samplers=tuple(data.get("samplers") or ()),
                   seeds=tuple(data.get("seeds") or ()),
                   grid={k: tuple(v) for k, v in (data.get("grid") or {}).items()},
                   device=str(data.get("device", "")), recipe=dict(data.get("recipe") or {}),
                   corpus=dict(data.get("corpus") or {}))


@dataclass(frozen=True)
class Manifest:
    """A run's ``manifest.json``: what was asked, where it ran, how far it got."""

    run_id: str
    status: str
    settings: RunSettings
    command: str = ""
    environment: Mapping[str, Any] = field(default_factory=dict)
    """Versions, hardware and plugins: free-form provenance, shown as it is."""
    executor: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] | None = None
    """What ``--resume`` rebuilds the plan from (:mod:`harness.drive.resume`)."""
    resumed: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reproducible(self) -> bool:
        return bool(self.environment.get("reproducible"))

    def with_changes(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "command": self.command,
                                "settings": self.settings.to_json(),
                                "environment": dict(self.environment),
                                "executor": dict(self.executor)}
        if self.plan is not None:
            data["plan"] = dict(self.plan)
        data["run_id"] = self.run_id
        if self.resumed:
            data["resumed"] = [dict(r) for r in self.resumed]
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_id: str = "") -> Manifest:
        """ValueError if ``data`` is not a manifest (not a mapping, or its parts mistyped)."""
        _check_manifest(data)
        parts = {name: {} if data.get(name) is None else data[name]
                 for name in ("settings", "environment", "executor")}
        for name, value in parts.items():
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} is not an object")
        plan = data.get("plan")
        if plan is not None and not isinstance(plan, Mapping):
            raise ValueError("plan is not an object")
        known = {"status", "command", "settings", "environment", "executor", "plan", "run_id",
                 "resumed"}
        return cls(run_id=str(data.get("run_id") or run_id), status=str(data.get("status", "")),
                   settings=RunSettings.from_json(parts["settings"]),
                   command=str(data.get("command") or ""), environment=parts["environment"],
                   executor=parts["executor"], plan=plan,
                   resumed=tuple(data.get("resumed") or ()),
                   extra={k: v for k, v in data.items() if k not in known})


def _is(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    """A check: None or of ``kind`` (a bool only where ``kind`` has bool: not a number)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return lambda v: v is None or isinstance(v, kinds) and (bool in kinds or type(v) is not bool)


def _each(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    """A check: None or a list of ``kind``."""
    return lambda v: v is None or isinstance(v, list) and all(x is not None and _is(kind)(x)
                                                              for x in v)


def _check_types(checks: Mapping[str, tuple[Any, Callable[[Any], bool]]]) -> None:
    for name, (value, check) in checks.items():
        if not check(value):
            raise ValueError(f"{name} has the wrong type ({type(value).__name__})")


SCALAR = (str, int, float, bool)
RECORD_TYPES = {"error": str, "started": str, "finished": str, "wall_seconds": (int, float),
                "train_seconds": (int, float), "num_params": int, "torch_threads": int,
                "carries_state": bool, "model_settings": Mapping, "checkpoint": str}


def _check_record(r: Record) -> Record:
    """``r``, or ValueError naming a field of the wrong type."""
    _check_types({"status": (r.status, lambda v: isinstance(v, str)),
                  **{n: (getattr(r, n), _is(kind)) for n, kind in RECORD_TYPES.items()},
                  "settings": (list(r.settings.values()), _each(SCALAR)),
                  "generated": (list(r.generated.values()), _each(str)),
                  "thread_dependent_parameters": (list(r.thread_dependent_parameters),
                                                  _each(str))})
    return r


def _check_manifest(data: Any) -> None:
    """ValueError naming the first field of a manifest's JSON with the wrong type (absent
    and null fields are left to :meth:`Manifest.from_json`'s defaults)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    parts = {n: data.get(n) or {} for n in ("settings", "environment", "executor", "plan")}
    _check_types({name: (value, _is(dict)) for name, value in parts.items()})
    settings, plan = parts["settings"], parts["plan"]
    _check_types({
        **{n: (data.get(n), _is(str)) for n in ("status", "command", "run_id")},
        "resumed": (data.get("resumed"), _each(dict)),
        **{f"settings.{n}": (settings.get(n), _is(str)) for n in ("task", "device")},
        **{f"settings.{n}": (settings.get(n), _each(str)) for n in ("models", "samplers")},
        "settings.seeds": (settings.get("seeds"), _each(int)),
        "settings.grid": (settings.get("grid"), lambda v: _is(dict)(v)
                          and all(isinstance(x, list) for x in (v or {}).values())),
        **{f"settings.{n}": (settings.get(n), _is(dict)) for n in ("recipe", "corpus")},
        "plan.task": (plan.get("task"), _is(str)),
        "plan.task_settings": (plan.get("task_settings"), _is(dict)),
        "plan.combinations": (plan.get("combinations"), _each(dict)),
    })
    for c in plan.get("combinations") or ():
        point = c.get("settings") or {}
        if not (all(isinstance(c.get(k), str) for k in ("model", "sampler"))
                and isinstance(c.get("seed"), int) and isinstance(point, dict)
                and _each(SCALAR)(list(point.values()))):
            raise ValueError("plan.combinations holds a wrong-shaped combination")
