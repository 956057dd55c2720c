"""The check of ``--track``: the observers a run exports to (see
:mod:`harness.drive.observers`), refused up front when unknown or not installed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.errors import ConfigError
from harness.plugin.registry import Registry


def check_track(track: Sequence[str] | None, registry: Registry) -> tuple[str, ...]:
    """The observer names of ``track`` (each once, in order), or a one-line ConfigError: a
    name no plugin registers (listing the choices), or an observer whose libraries are not
    installed (saying how to install them)."""
    if track is None:
        return ()
    if isinstance(track, (str, bytes)) or not isinstance(track, Iterable):
        raise ConfigError(f"track must be a list of observer names, got {track!r} "
                          f"(choose from: {', '.join(registry.observers.names())})")
    names = tuple(dict.fromkeys(track))
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"track must be a list of observer names, got {name!r}")
        spec = registry.observer(name)
        missing = spec.missing()
        if missing:
            install = spec.install or f"pip install {' '.join(missing)}"
            raise ConfigError(f"--track {name} needs {', '.join(missing)}: {install}")
    return names
