"""The one number check: every refusal is one line naming the option and the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.numbers import MAX_SEED, check_number, check_seed, is_finite


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {"integer": True, "minimum": 1}, "x must be a positive integer, got 0"),
    (1.0, {"integer": True, "minimum": 1}, "x must be a positive integer, got 1.0"),
    (True, {"integer": True}, "x must be an integer, got True"),
    (True, {"above": 0}, "x must be a finite number > 0, got True"),
    (math.nan, {}, "x must be a finite number, got nan"),
    (math.inf, {"minimum": 0}, "x must be a finite number >= 0, got inf"),
    ("1", {}, "x must be a finite number, got '1'"),
    (1.0, {"minimum": 0, "below": 1}, "x must be a finite number >= 0 and < 1, got 1.0"),
    (5, {"above": 0, "maximum": 4, "unit": "seconds"},
     "x must be a finite number of seconds > 0 and at most 4, got 5"),
])
def test_a_bad_number_is_refused_in_one_line(value: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_number(value, name="x", **kwargs)
    assert str(error.value) == message


def test_a_good_number_comes_back_as_a_plain_one() -> None:
    assert check_number(np.int64(3), name="x", integer=True, minimum=1) == 3
    assert type(check_number(np.int64(3), name="x", integer=True)) is int
    assert check_number(0.5, name="x", above=0, below=1) == 0.5
    assert check_number(4, name="x", maximum=4) == 4


@pytest.mark.parametrize("value", [10**309, -10**309, 10**400])
def test_an_integer_too_large_for_a_float_is_refused_not_an_overflow(value: int) -> None:
    # TOML and JSON integers are unbounded; math.isfinite raises OverflowError on these.
    assert not is_finite(value) and is_finite(10**308) and not is_finite(math.inf)
    with pytest.raises(ConfigError, match=r"^lr must be a finite number > 0, got -?1000"):
        check_number(value, name="lr", above=0)
    assert check_number(value, name="n", integer=True) == value  # an integer need not fit


@pytest.mark.parametrize("value", [-1, MAX_SEED + 1, 1.5, "1", True, None])
def test_seeds_are_whole_numbers_from_0_to_2_63_minus_1(value: object) -> None:
    with pytest.raises(ConfigError, match="^--seed must be"):
        check_seed(value, name="--seed")


def test_a_numpy_seed_is_a_seed() -> None:
    assert check_seed(np.uint8(7)) == 7 and check_seed(MAX_SEED) == MAX_SEED
