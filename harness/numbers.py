"""The one check of numbers the user gives: options, task-file values, seeds, settings."""

from __future__ import annotations

import math
import numbers
import operator

from harness.errors import ConfigError

MAX_SEED = 2**63 - 1
"""Seeds are stored, loaded into pandas and compared as signed 64-bit integers."""


def check_number(value: object, *, name: str, integer: bool = False,
                 minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, below: float | None = None,
                 unit: str = "") -> int | float:
    """``value`` if it is a finite real number (an integer when ``integer``) within the
    bounds (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive); otherwise a
    one-line ConfigError naming ``name``. A bool is never a number here."""
    ok = not isinstance(value, bool)
    if integer:
        try:
            value = operator.index(value) if ok else value  # ints and numpy integers
        except TypeError:
            ok = False
    else:
        ok = ok and isinstance(value, numbers.Real) and is_finite(value)
    ok = ok and (minimum is None or value >= minimum) and (above is None or value > above) \
        and (maximum is None or value <= maximum) and (below is None or value < below)
    if not ok:
        kind = "an integer" if integer else f"a finite number{' of ' + unit if unit else ''}"
        raise ConfigError(f"{name} must be {_describe(kind, minimum, above, maximum, below)}"
                          f", got {value!r}")
    return value  # type: ignore[return-value]


def is_finite(value: float) -> bool:
    """``math.isfinite(value)``, but False for an integer too large for a float (TOML and
    JSON integers are unbounded), where ``math.isfinite`` raises OverflowError."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _describe(kind: str, minimum: float | None, above: float | None,
              maximum: float | None, below: float | None) -> str:
    if kind == "an integer" and minimum == 1 and above is None and below is None:
        return "a positive integer" + (f" at most {_show(maximum)}" if maximum is not None else "")
    bounds = [f">= {_show(minimum)}" if minimum is not None else "",
              f"> {_show(above)}" if above is not None else "",
              f"at most {_show(maximum)}" if maximum is not None else "",
              f"< {_show(below)}" if below is not None else ""]
    shown = " and ".join(b for b in bounds if b)
    return f"{kind} {shown}" if shown else kind


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def check_seed(value: object, *, name: str = "seed") -> int:
    """``value`` as a seed: a whole number from 0 to :data:`MAX_SEED`. Negative seeds are
    refused: torch maps them onto large positive ones and ``random.seed`` onto their
    absolute value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) <= MAX_SEED:
        raise ConfigError(f"{name} must be from 0 to 2**63 - 1 ({MAX_SEED}), got {value}")
    return int(value)
