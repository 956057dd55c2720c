import pytest

from harness.errors import ConfigError
from harness.plan.budget import parse_budget, parse_target


@pytest.mark.parametrize(("text", "fields"), [
    ("tokens=1.2e6", {"budget_tokens": 1_200_000}),
    ("tokens=1_200_000", {"budget_tokens": 1_200_000}),
    ("steps=500", {"budget_steps": 500}),
    ("seconds=90.5", {"budget_seconds": 90.5}),
    ("epochs=500", {"epochs": 500}),
])
def test_a_budget_becomes_its_recipe_field(text: str, fields: dict) -> None:
    assert parse_budget(text) == fields


@pytest.mark.parametrize(("text", "message"), [
    ("parsecs=3", r"unknown unit 'parsecs'; choose from: tokens, steps, seconds, epochs"),
    ("tokens", r"takes NAME=NUMBER"),
    ("tokens=", r"takes NAME=NUMBER"),
    ("tokens=many", r"'many' is not a number"),
    ("tokens=0", r"must be a positive number"),
    ("tokens=nan", r"must be a positive number"),
    ("steps=2.5", r"must be a whole number"),
])
def test_bad_budgets_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_budget(text)
    assert "\n" not in str(caught.value)


def test_a_target_names_a_metric_validation_measures() -> None:
    assert parse_target("valid_bpc=2.2") == {"target_metric": "valid_bpc", "target_value": 2.2}
    assert parse_target("valid_ppl=5") == {"target_metric": "valid_ppl", "target_value": 5.0}
    with pytest.raises(ConfigError, match=r"'test_bpc' is not a metric validation measures; "
                       r"choose from: valid_bpc, valid_ppl"):
        parse_target("test_bpc=2")
    with pytest.raises(ConfigError, match=r"must be a positive number"):
        parse_target("valid_bpc=-1")
