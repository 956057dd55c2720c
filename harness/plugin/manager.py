"""The plugin manager: built-in plugins and installed ones, loaded through one path.

Built-in plugins are modules listed by name in :data:`BUILTIN_PLUGINS`. Installed plugins
are found through the entry-point group ``rnn_harness`` (the distribution's name); setting
``HARNESS_DISABLE_PLUGIN_AUTOLOAD`` to a non-empty value skips them. Each plugin is loaded,
validated and asked for its registrations on its own, so one broken plugin is reported
(with its distribution and error) and never stops the others: an exception or a
``SystemExit`` from its import or its hooks, or a spec of the wrong type passed to
``register``. A ``KeyboardInterrupt`` still stops everything.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from harness.plugin import hookspecs
from harness.plugin.hookspecs import PROJECT
from harness.plugin.contracts import (ModelSpec, ObserverSpec, OptimizerSpec, SamplerSpec,
                                      ScheduleSpec)
from harness.plugin.registry import Catalog, PluginFailure, Provider, Registry
from harness.version import DISTRIBUTION, __version__

ENTRY_POINT_GROUP = PROJECT
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "harness_builtins.rnn",
    "harness_builtins.gated",
    "harness_builtins.ngram",
    "harness_builtins.samplers",
    "harness_builtins.optim",
    "harness_builtins.trackers",
)


def autoload_enabled() -> bool:
    """Whether installed plugins are loaded (``HARNESS_DISABLE_PLUGIN_AUTOLOAD`` unset)."""
    return not os.environ.get(AUTOLOAD_ENV)


@dataclass(frozen=True)
class RegistryLoader:
    """How a registry was loaded, as a picklable callable: a worker process calls it to
    load the same plugins (the ``extra`` objects must then be picklable too)."""

    autoload: bool
    extra: tuple[Any, ...] = ()

    def __call__(self) -> Registry:
        return load_registry(self.autoload, self.extra)


def load_registry(autoload: bool | None = None, extra: Iterable[Any] = ()) -> Registry:
    """Load the built-in plugins, the installed ones (unless autoload is off) and ``extra``
    plugin objects, and collect what they register."""
    extra = tuple(extra)
    autoload = autoload if autoload is not None else autoload_enabled()
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(loader=RegistryLoader(autoload, extra))
    builtin = Provider("", DISTRIBUTION, __version__)
    candidates: list[tuple[str, Provider, Callable[[], Any]]] = [
        (name, _named(builtin, name), _importer(name)) for name in BUILTIN_PLUGINS
    ]
    if autoload:
        candidates += _entry_point_candidates()
    for index, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        candidates.append((name, _named(Provider("", "(registered in process)", ""), name),
                           lambda plugin=plugin: plugin))
    for name, provider, load in candidates:
        if _register(pm, name, provider, load, registry):
            registry.plugins.append(provider)
    for name, provider in ((p.plugin, p) for p in registry.plugins):
        _collect(pm, name, provider, registry)
    return registry


def _named(provider: Provider, name: str) -> Provider:
    return Provider(name, provider.distribution, provider.version)


def _importer(module: str) -> Callable[[], Any]:
    return lambda: importlib.import_module(module)


def _entry_point_candidates() -> list[tuple[str, Provider, Callable[[], Any]]]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        provider = Provider(
            ep.name,
            dist.metadata["Name"] if dist is not None else "(unknown distribution)",
            dist.version if dist is not None else "",
        )
        found.append((ep.name, provider, ep.load))
    return found


def _fail(registry: Registry, provider: Provider, error: BaseException | str) -> None:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    registry.failures.append(
        PluginFailure(provider.plugin, provider.distribution, provider.version,
                      " ".join(text.split()))
    )


def _register(
    pm: pluggy.PluginManager,
    name: str,
    provider: Provider,
    load: Callable[[], Any],
    registry: Registry,
) -> bool:
    """Import and register one plugin; on any error record it and leave the rest alone."""
    try:
        plugin = load()
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the plugin's error, not ours
        _fail(registry, provider, error)
        return False
    if pm.has_plugin(name) or pm.is_registered(plugin):
        _fail(registry, provider, f"a plugin named {name!r} is already loaded")
        return False
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        _fail(registry, provider, error)
        return False
    return True


def _collect(pm: pluggy.PluginManager, name: str, provider: Provider, registry: Registry) -> None:
    """Call one plugin's hooks, attributing each registration to it."""
    hooks: list[tuple[pluggy.HookCaller, Catalog[Any], type]] = [
        (pm.hook.register_models, registry.models, ModelSpec),
        (pm.hook.register_samplers, registry.samplers, SamplerSpec),
        (pm.hook.register_optimizers, registry.optimizers, OptimizerSpec),
        (pm.hook.register_schedules, registry.schedules, ScheduleSpec),
        (pm.hook.register_observers, registry.observers, ObserverSpec),
    ]
    for hook, catalog, expected in hooks:
        for impl in hook.get_hookimpls():
            if impl.plugin_name != name:
                continue
            kwargs = {"register": _registrar(hook.name, catalog, expected, provider, registry)}
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except (Exception, SystemExit) as error:  # noqa: BLE001 - must not stop others
                _fail(registry, provider, error)


def _registrar(hook: str, catalog: Catalog[Any], expected: type, provider: Provider,
               registry: Registry) -> Callable[[Any], None]:
    """The ``register`` callback a hook gets: adds a spec of the ``expected`` type to
    ``catalog``; anything else is recorded as the plugin's failure, not listed (it would
    only break at training time)."""

    def register(spec: Any) -> None:
        if isinstance(spec, expected):
            catalog.add(spec, provider)
            return
        article = "an" if expected.__name__[0] in "AEIOU" else "a"
        _fail(registry, provider, f"{hook} got {type(spec).__name__} {_label(spec)}, "
                                  f"expected {article} {expected.__name__}")

    return register


def _label(spec: Any) -> str:
    name = getattr(spec, "name", None)
    return repr(name) if isinstance(name, str) else repr(spec)[:60]
