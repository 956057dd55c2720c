"""A task's fixed train / validation / test boundaries over its token stream.

A held-out task publishes its boundaries in its task file (``[splits]``), so every run
and every paper that uses the task scores the same characters: the parts are contiguous,
in the order train, valid, test, given either as fractions of the stream or as token
counts. (A book's last tenth can be measurably harder than the tenth before it, so a
boundary that moved with a setting would move the numbers.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Splits:
    """The ``[splits]`` table: each part a fraction in [0, 1] or a token count (int).

    With fractions, a part is ``floor(fraction * tokens)`` tokens, except that when the
    fractions sum to 1 the last part given a nonzero fraction takes what rounding left.
    """

    train: float | int
    valid: float | int
    test: float | int = 0

    def counts(self, total: int, *, task: str) -> tuple[int, int, int]:
        """The token counts of train, valid and test for a stream of ``total`` tokens;
        ConfigError (one line, naming the task) when a part declared nonzero comes out
        empty or the counts ask for more tokens than the stream has."""
        values = (self.train, self.valid, self.test)
        if all(isinstance(v, int) for v in values):
            counts = tuple(int(v) for v in values)
            if sum(counts) > total:
                raise ConfigError(
                    f"task {task}: [splits] asks for {sum(counts):,} tokens "
                    f"({' + '.join(f'{c:,}' for c in counts)}) but the corpus has {total:,}")
        else:
            counts = tuple(math.floor(float(v) * total) for v in values)
            if math.isclose(sum(float(v) for v in values), 1.0):
                last = max(i for i, v in enumerate(values) if v)
                counts = tuple(total - sum(counts[:last]) if i == last else c
                               for i, c in enumerate(counts))
        for part, value, count in zip(PARTS, values, counts):
            if value and count == 0:
                raise ConfigError(f"task {task}: [splits] leaves the {part} part empty "
                                  f"(0 of {total:,} tokens)")
        return counts  # type: ignore[return-value]


def parse_splits(table: Mapping[str, Any], *, origin: str) -> Splits:
    """A :class:`Splits` from a task file's ``[splits]`` table; ConfigError naming the
    task file and the key for anything else: unknown keys, a missing train or valid part,
    negative numbers, fractions above 1 or summing above 1, fractions mixed with counts."""
    unknown = sorted(set(table) - set(PARTS))
    if unknown:
        raise ConfigError(f"task {origin}: unknown key(s) [splits] {', '.join(map(repr, unknown))}; "
                          f"choose from: {', '.join(PARTS)}")
    values: dict[str, float | int] = {}
    for part in PARTS:
        if part not in table:
            if part == "test":
                values[part] = 0
                continue
            raise ConfigError(f"task {origin}: [splits] {part} is missing")
        value = table[part]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ConfigError(f"task {origin}: [splits] {part} must be a fraction in [0, 1] "
                              f"or a token count, got {value!r}"[:300])
        values[part] = value
    if values["train"] == 0 or values["valid"] == 0:
        raise ConfigError(f"task {origin}: [splits] train and valid must not be 0")
    given = [values[p] for p in PARTS if p in table]
    fractions = [v for v in given if isinstance(v, float)]
    if fractions and len(fractions) != len([v for v in given if v]):
        raise ConfigError(f"task {origin}: [splits] mixes fractions and token counts; "
                          "give all parts as fractions (0.9) or all as counts (90_000_000)")
    if fractions:
        if any(v > 1 for v in fractions):
            raise ConfigError(f"task {origin}: [splits] fractions must be at most 1")
        if sum(fractions) > 1 + 1e-9:
            raise ConfigError(f"task {origin}: [splits] fractions sum to {sum(fractions):g}, "
                              "more than 1")
    return Splits(**values)
