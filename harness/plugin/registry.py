"""What the plugins registered: models, samplers, optimizers, learning-rate schedules and
observers by name, each with its provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness.plugin.contracts import (ModelSpec, ObserverSpec, OptimizerSpec, SamplerSpec,
                                      ScheduleSpec)
from harness.errors import ConfigError


@dataclass(frozen=True)
class Provider:
    """The plugin (and the distribution that ships it) behind a registration."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised."""

    plugin: str
    distribution: str
    version: str
    error: str


Spec = TypeVar("Spec", ModelSpec, SamplerSpec, OptimizerSpec, ScheduleSpec, ObserverSpec)


@dataclass
class Catalog(Generic[Spec]):
    """Specs of one kind (models, samplers, optimizers, schedules or observers), unique by
    name."""

    kind: str
    specs: dict[str, Spec] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)

    conflicts: dict[str, str] = field(default_factory=dict)

    def add(self, spec: Spec, provider: Provider) -> None:
        """Add ``spec``. A name already taken is recorded as a conflict naming both
        providers; the name then fails when selected, and everything else stays usable."""
        if spec.name in self.specs:
            self.conflicts[spec.name] = (
                f"{self.kind} {spec.name!r} is registered twice: "
                f"by {self.providers[spec.name]} and by {provider}"
            )
            return
        self.specs[spec.name] = spec
        self.providers[spec.name] = provider

    def names(self) -> list[str]:
        return sorted(self.specs)



@dataclass
class Registry:
    """Everything the loaded plugins provide, plus the plugins that failed."""

    models: Catalog[ModelSpec] = field(default_factory=lambda: Catalog("model"))
    samplers: Catalog[SamplerSpec] = field(default_factory=lambda: Catalog("sampler"))
    optimizers: Catalog[OptimizerSpec] = field(default_factory=lambda: Catalog("optimizer"))
    schedules: Catalog[ScheduleSpec] = field(default_factory=lambda: Catalog("schedule"))
    observers: Catalog[ObserverSpec] = field(default_factory=lambda: Catalog("observer"))
    failures: list[PluginFailure] = field(default_factory=list)
    plugins: list[Provider] = field(default_factory=list)
    loader: Callable[[], Registry] | None = field(default=None, repr=False, compare=False)
    """Loads the same registry again, e.g. in a worker process (set by ``load_registry``)."""

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``; an unknown name raises a ConfigError listing choices."""
        return self._lookup(self.models, name)

    def sampler(self, name: str) -> SamplerSpec:
        """The sampler called ``name``; an unknown name raises a ConfigError listing choices."""
        return self._lookup(self.samplers, name)

    def optimizer(self, name: str) -> OptimizerSpec:
        """The optimizer called ``name``; an unknown name raises a ConfigError listing choices."""
        return self._lookup(self.optimizers, name)

    def schedule(self, name: str) -> ScheduleSpec:
        """The learning-rate schedule called ``name``; an unknown name raises a ConfigError
        listing choices."""
        return self._lookup(self.schedules, name)

    def observer(self, name: str) -> ObserverSpec:
        """The observer called ``name`` (``--track``); an unknown name raises a ConfigError
        listing choices."""
        return self._lookup(self.observers, name)

    def _lookup(self, catalog: Catalog[Spec], name: str) -> Spec:
        if name in catalog.conflicts:
            raise ConfigError(catalog.conflicts[name])
        if name in catalog.specs:
            return catalog.specs[name]
        message = f"unknown {catalog.kind} {name!r}; choose from: {', '.join(catalog.names())}"
        if self.failures:
            broken = "; ".join(
                f"{f.plugin} ({f.distribution} {f.version}): {f.error}" for f in self.failures
            )
            message += f" (plugins that failed to load, which may provide it: {broken})"
        raise ConfigError(message)
