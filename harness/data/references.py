"""Reference numbers: what a source publishes for a model and sampler trained on a task,
and when one of our results is comparable with it.

A task file lists them (``[[reference]]``). A number applies to a result only when the task,
the exact corpus (sha1), the model, the sampler and every recipe field agree: the task's own
recipe with the entry's ``settings`` applied, against the recipe the result was trained
with. A published number says nothing about any other setting, so nothing looser counts.
An entry's ``ignore`` names the recipe fields that do not decide whether it applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.metrics import NAMES as METRIC_NAMES
from harness.numbers import is_finite

Scalar = str | int | float | bool
"""A recipe value as a task file or a manifest holds it."""

ENTRY_KEYS = ("model", "sampler", "metric", "low", "high", "source", "settings", "digits",
              "ignore")
MAX_DIGITS = 20
"""The most decimals a reference may print: more is a typo (and a precision format
specifiers refuse past 2**31)."""


@dataclass(frozen=True)
class Reference:
    """A published value of ``metric``, ``low`` to ``high`` (equal for a single number), for
    ``model`` with ``sampler``, trained with the task's recipe changed by ``settings``."""

    model: str
    sampler: str
    metric: str
    low: float
    high: float
    source: str
    settings: Mapping[str, Scalar] = field(default_factory=dict)
    digits: int | None = None
    """Decimals the source prints: ours is rounded to as many before the range check (None:
    compared unrounded)."""
    ignore: tuple[str, ...] = ()
    """Recipe fields that do not decide whether the number applies."""

    def applies(self, task_recipe: Mapping[str, Any], recipe: Mapping[str, Any],
                defaults: Mapping[str, Any]) -> bool:
        """Whether a result trained with ``recipe`` (every field) is comparable: each field
        not ignored equals ``defaults`` changed by the task's recipe, then by ``settings``.
        A field either side lacks matches nothing."""
        expected = {**defaults, **task_recipe, **self.settings}
        names = (set(expected) | set(recipe)) - set(self.ignore)
        return all(name in expected and name in recipe and _same(expected[name], recipe[name])
                   for name in names)

    def rounded(self, value: float) -> float:
        """``value`` as the source prints it (to ``digits`` decimals)."""
        return value if self.digits is None else float(f"{value:.{self.digits}f}")

    def contains(self, value: float) -> bool:
        """Whether ``value``, rounded as the source prints, lies in the range, ends included."""
        return self.low <= self.rounded(value) <= self.high

    def text(self) -> str:
        """The range as the source prints it: ``1.0 to 1.2``, or ``1.1`` for one number."""
        low, high = (f"{v:g}" if self.digits is None else f"{v:.{self.digits}f}"
                     for v in (self.low, self.high))
        return low if low == high else f"{low} to {high}"

    def format(self, value: float) -> str:
        """``value`` rounded as the source prints it, as text."""
        return f"{value:g}" if self.digits is None else f"{value:.{self.digits}f}"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "sampler": self.sampler, "metric": self.metric,
                "low": self.low, "high": self.high, "source": self.source,
                "settings": dict(self.settings), "digits": self.digits,
                "ignore": list(self.ignore)}


@dataclass(frozen=True)
class ReferenceSet:
    """A task's reference numbers with what they hold for: the task's name, its corpus's
    sha1 and its ``[recipe]`` table, which each entry's settings change. This is what a
    run's manifest stores, so that its report needs no task file."""

    task: str
    corpus_sha1: str | None
    recipe: Mapping[str, Scalar]
    entries: tuple[Reference, ...] = ()

    def matching(self, model: str, sampler: str, *, task: str, corpus_sha1: str | None,
                 recipe: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[Reference]:
        """The entries a result of ``model`` with ``sampler`` on ``task`` and this corpus,
        trained with ``recipe`` (every field), is comparable with; ``defaults``: the recipe
        fields' defaults, which the task's recipe changes."""
        if task != self.task or not self.corpus_sha1 or corpus_sha1 != self.corpus_sha1:
            return []
        return [entry for entry in self.entries if entry.model == model
                and entry.sampler == sampler and entry.applies(self.recipe, recipe, defaults)]

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "corpus_sha1": self.corpus_sha1,
                "recipe": dict(self.recipe), "entries": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, data: Any) -> ReferenceSet:
        """From :meth:`to_json`'s form; ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"references must be an object, got {short_repr(data)}")
        task, sha1 = data.get("task"), data.get("corpus_sha1")
        recipe, entries = data.get("recipe", {}), data.get("entries", [])
        if not isinstance(task, str) or not (sha1 is None or isinstance(sha1, str)):
            raise ValueError("references need a task name and a corpus sha1 (or null)")
        check_scalars("recipe", recipe)
        if not isinstance(entries, list):
            raise ValueError(f"entries must be a list, got {short_repr(entries)}")
        return cls(task, sha1, dict(recipe), tuple(parse_reference(e) for e in entries))


def parse_reference(data: Any) -> Reference:
    """A :class:`Reference` from its task-file table or stored JSON, every key checked;
    ValueError naming the first wrong key (``low must be a number, got 'x'``)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"must be a table, got {short_repr(data)}")
    unknown = sorted(set(data) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(f"has unknown key(s) {', '.join(map(shown_name, unknown))}; "
                         f"choose from: {', '.join(ENTRY_KEYS)}")
    model, sampler, metric, source = (_text(data, k) for k in ("model", "sampler", "metric",
                                                                "source"))
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {', '.join(METRIC_NAMES)}, got {metric!r}")
    low, high = _number(data, "low"), _number(data, "high")
    if low > high:
        raise ValueError(f"low ({low:g}) must not be above high ({high:g})")
    settings = data.get("settings", {})
    check_scalars("settings", settings)
    digits = data.get("digits")
    if digits is not None and (not isinstance(digits, int) or isinstance(digits, bool)
                               or not 0 <= digits <= MAX_DIGITS):
        raise ValueError(f"digits must be an integer >= 0 and at most {MAX_DIGITS}, got "
                         f"{short_repr(digits)}")
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(n, str) for n in ignore):
        raise ValueError(f"ignore must be a list of recipe field names, got "
                         f"{short_repr(ignore)}")
    return Reference(model, sampler, metric, low, high, source, dict(settings), digits,
                     tuple(ignore))


def check_scalars(key: str, table: Any) -> None:
    """ValueError unless ``table`` maps names to strings, numbers or booleans (a recipe's
    values: a list or a table there is a mistake)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{key} must be a table, got {short_repr(table)}")
    for name, value in table.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"{key} {shown_name(name)} must be a string, number or boolean, "
                             f"got {short_repr(value)}")


def short_repr(value: object) -> str:
    """``repr(value)``, cut short: an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def shown_name(name: object) -> str:
    """A key or name for an error line: as it is, or its repr when it is blank or holds a
    line break or another unprintable character, which would split or hide the line."""
    text = str(name)
    return text if text.isprintable() and text.strip() else repr(text)


def _text(data: Mapping[str, Any], key: str) -> str:
    if key not in data:
        raise ValueError(f"{key} is missing")
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {short_repr(value)}")
    return value


def _number(data: Mapping[str, Any], key: str) -> float:
    if key not in data:
        raise ValueError(f"{key} is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not is_finite(value):
        raise ValueError(f"{key} must be a finite number, got {short_repr(value)}")
    return float(value)


def _same(expected: Any, actual: Any) -> bool:
    """Equal values, a bool never equal to a number (``True == 1`` to Python)."""
    if isinstance(expected, bool) != isinstance(actual, bool):
        return False
    return bool(expected == actual)
