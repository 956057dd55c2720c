"""The environments of compared runs, side by side: every manifest ``environment`` key on
which they differ (the harness revision and dirty tree, CPU and its ISA flags, torch and
its MKL/oneDNN build, threads, the device and GPU, the variables that change maths), each
run's value beside it.

Nested values become dotted keys (``torch_build.onednn``, ``math_env.OMP_NUM_THREADS``,
``plugins.harness_builtins.rnn``); a variable a run's ``math_env`` lacks is ``(not set)``,
a plugin its ``plugins`` lacks ``(not loaded)``. A key a run's manifest does not hold (a
run made before the harness recorded it) is ``(not recorded)``: it makes a difference only
where the runs that hold it disagree, and is otherwise listed apart, so an old run
compared with a new one shows what actually differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NOT_RECORDED = "(not recorded)"
NOT_SET = "(not set)"
NOT_LOADED = "(not loaded)"
ABSENT = {"math_env": NOT_SET, "plugins": NOT_LOADED}
"""Keys whose members a run lists only when present: a variable of ``math_env`` it does
not list was unset, a plugin of ``plugins`` it does not list was not loaded."""

IGNORED = frozenset({"plugin_failures"})
"""Keys left out of the comparison: which plugins failed to load shows in ``plugins``."""


@dataclass(frozen=True)
class EnvironmentDiff:
    """The runs' labels, each differing key with each run's value (in the runs' order),
    and the keys some runs did not record (key -> the labels lacking it)."""

    labels: tuple[str, ...]
    differences: tuple[tuple[str, tuple[str, ...]], ...]
    not_recorded: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def match(self) -> bool:
        """Whether every key the runs recorded agrees."""
        return not self.differences

    def summary(self) -> str:
        """One line: ``cpu (A x, B y); math_env.OMP_NUM_THREADS (A (not set), B 1)``, or
        ``none`` when the environments match."""
        if self.match:
            return "none"
        return "; ".join(
            f"{key} ({', '.join(f'{label} {v}' for label, v in zip(self.labels, values))})"
            for key, values in self.differences)

    def to_json(self) -> dict[str, Any]:
        """As ``compare --format json`` writes it."""
        return {"match": self.match,
                "differences": [{"key": key, "values": dict(zip(self.labels, values))}
                                for key, values in self.differences],
                "not_recorded": {key: list(labels) for key, labels in self.not_recorded}}


def flat_environment(environment: Mapping[str, Any]) -> dict[str, str]:
    """``environment`` as dotted key -> display text: nested objects become dotted keys,
    lists of plain values one comma-joined text, ``plugins`` one key per plugin (its
    distribution and version), and :data:`IGNORED` keys left out."""
    flat: dict[str, str] = {}
    for key, value in environment.items():
        if key in IGNORED:
            continue
        if key == "plugins" and isinstance(value, list):
            for plugin in value:
                if isinstance(plugin, Mapping):
                    flat[f"plugins.{plugin.get('plugin')}"] = \
                        f"{plugin.get('distribution')} {plugin.get('version')}"
        elif isinstance(value, Mapping):
            for name, text in flat_environment(value).items():
                flat[f"{key}.{name}"] = text
            if not value:
                flat[key] = "{}"
        else:
            flat[key] = _text(value)
    return flat


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(map(str, value)) if value else "none"
    return json.dumps(value, sort_keys=True, default=str)


def environment_differences(environments: Sequence[Mapping[str, Any]],
                            labels: Sequence[str]) -> EnvironmentDiff:
    """How the ``environments`` (each run's manifest ``environment``) differ, run by run
    in the order of ``labels``."""
    flats = [flat_environment(env) for env in environments]
    for name, absent in ABSENT.items():
        members = {key for flat in flats for key in flat if key.startswith(f"{name}.")}
        for env, flat in zip(environments, flats):
            if isinstance(env.get(name), (Mapping, list)):  # recorded: a missing one is absent
                flat.update({key: absent for key in members if key not in flat})
                flat[name] = "recorded"  # the same in all that have it: never a difference
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    differences, unrecorded = [], []
    for key in keys:
        values = tuple(flat.get(key, NOT_RECORDED) for flat in flats)
        recorded = {v for v in values if v != NOT_RECORDED}
        if len(recorded) > 1:
            differences.append((key, values))
        elif NOT_RECORDED in values:
            unrecorded.append((key, tuple(label for label, value in zip(labels, values)
                                          if value == NOT_RECORDED)))
    return EnvironmentDiff(tuple(labels), tuple(differences), tuple(unrecorded))


def unrecorded_text(diff: EnvironmentDiff) -> str:
    """``A lacks harness_source, cpu_flags, ...``: the top-level keys each run did not
    record, per run; '' when every run recorded every key."""
    lacking: dict[str, dict[str, None]] = {}
    for key, labels in diff.not_recorded:
        for label in labels:
            lacking.setdefault(label, {})[key.split(".", 1)[0]] = None
    return "; ".join(f"{label} lacks {', '.join(keys)}" for label, keys in sorted(lacking.items()))
