import pytest

from harness.data.splits import Splits, parse_splits
from harness.errors import ConfigError


def test_fractions_cover_the_stream_contiguously_and_the_last_part_takes_the_rest() -> None:
    splits = parse_splits({"train": 0.8, "valid": 0.1, "test": 0.1}, origin="t")
    assert splits.counts(1001, task="t") == (800, 100, 101)
    assert sum(splits.counts(170_000, task="t")) == 170_000


def test_fractions_below_one_leave_the_rest_unused() -> None:
    splits = parse_splits({"train": 0.5, "valid": 0.25}, origin="t")
    assert splits.counts(100, task="t") == (50, 25, 0)


def test_counts_are_taken_as_given() -> None:
    splits = parse_splits({"train": 90, "valid": 5, "test": 5}, origin="t")
    assert splits.counts(200, task="t") == (90, 5, 5)
    with pytest.raises(ConfigError, match=r"asks for 100 tokens \(90 \+ 5 \+ 5\) but the "
                       r"corpus has 99"):
        splits.counts(99, task="t")


def test_a_part_that_comes_out_empty_is_one_line_naming_it() -> None:
    splits = parse_splits({"train": 0.98, "valid": 0.01, "test": 0.01}, origin="t")
    with pytest.raises(ConfigError, match=r"^task t: \[splits\] leaves the valid part empty "
                       r"\(0 of 50 tokens\)$"):
        splits.counts(50, task="t")


@pytest.mark.parametrize("table, message", [
    ({"train": 0.8}, r"valid is missing"),
    ({"train": 0.8, "valid": 0.1, "tets": 0.1}, r"unknown key\(s\) \[splits\] 'tets'"),
    ({"train": 0.8, "valid": -0.1}, r"valid must be a fraction"),
    ({"train": 0.8, "valid": "a"}, r"valid must be a fraction"),
    ({"train": 0.8, "valid": True}, r"valid must be a fraction"),
    ({"train": 0.8, "valid": float("nan")}, r"valid must be a fraction"),
    ({"train": 0.8, "valid": 0.3}, r"fractions sum to 1.1, more than 1"),
    ({"train": 1.5, "valid": 0.1}, r"at most 1"),
    ({"train": 0.8, "valid": 100}, r"mixes fractions and token counts"),
    ({"train": 0, "valid": 0.1}, r"train and valid must not be 0"),
])
def test_bad_tables_are_refused_with_one_line(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_splits(table, origin="t")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("task t: ")


def test_a_zero_test_part_is_no_part() -> None:
    assert parse_splits({"train": 10, "valid": 5}, origin="t") == Splits(10, 5, 0)
