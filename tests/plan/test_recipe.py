import pytest

from harness.errors import ConfigError
from harness.plan.recipe import Recipe


def test_defaults_are_the_seeds() -> None:
    r = Recipe()
    assert (r.epochs, r.batch_size, r.num_steps, r.num_hiddens, r.lr, r.clip, r.max_tokens) == (
        500, 32, 35, 512, 1.0, 1.0, 10_000)


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("epochs", -1), ("batch_size", 0), ("num_steps", 0), ("num_hiddens", -5),
    ("lr", 0.0), ("lr", float("nan")), ("clip", -1.0), ("max_tokens", 0),
    ("valid_tokens", -1), ("eval_every", -2), ("dropout", 1.0),
    # wrong types: refused with the setting's name, not a TypeError or a stored True
    ("lr", True), ("clip", True), ("dropout", "x"), ("dropout", False), ("epochs", True),
    ("lr", "1"), ("precision", 5),
])
def test_out_of_range_values_name_the_setting(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        Recipe().with_overrides(**{field: value}).validate()


def test_overrides_ignore_none_and_reject_unknown_names() -> None:
    assert Recipe().with_overrides(epochs=None, lr=2.0).lr == 2.0
    with pytest.raises(ConfigError, match="unknown recipe setting"):
        Recipe().with_overrides(epoch=3)


def test_min_train_tokens_covers_any_sampler_offset() -> None:
    assert Recipe(batch_size=4, num_steps=5).min_train_tokens() == 4 * 5 + 5 + 1
