"""Held-out features, count models and optimizer settings are checked before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan.gate import plan_run
from harness.plan.request import RunRequest
from harness.plugin.manager import load_registry

REGISTRY = load_registry(autoload=False)


def request(task: Path, **options: object) -> RunRequest:
    options.setdefault("models", ("lstm",))
    options.setdefault("samplers", ("random",))
    return RunRequest.from_options(task=str(task), quiet=True, **options)


@pytest.fixture
def split_task(small_task: Path) -> Path:
    small_task.write_text(small_task.read_text().replace(
        "[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\ntest = 0.1\n[recipe]"))
    return small_task


@pytest.mark.parametrize(("options", "message"), [
    ({"recipe": {"budget_tokens": 1000}}, r"--budget tokens needs a task with \[splits\]"),
    ({"recipe": {"budget_seconds": 5.0}}, r"--budget seconds needs a task with \[splits\]"),
    ({"recipe": {"target_metric": "valid_bpc", "target_value": 2.0}},
     r"--target needs a task with \[splits\]"),
    ({"models": ("ngram",)}, r"model 'ngram' is a count model.*needs a task with \[splits\]"),
])
def test_held_out_features_on_a_d2l_task_are_refused(small_task: Path, options: dict,
                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        plan_run(request(small_task, **options), REGISTRY)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"recipe": {"optimizer": "lion"}}, r"unknown optimizer 'lion'; choose from: adam, adamw, sgd"),
    ({"recipe": {"schedule": "linear"}}, r"unknown schedule 'linear'"),
    ({"grid": {"optimizer": ["sgd", "lion"]}}, r"unknown optimizer 'lion'"),
    ({"recipe": {"stop_at_target": True}}, r"--stop-at-target needs --target"),
    ({"recipe": {"schedule": "cosine", "budget_seconds": 10.0}},
     r"schedule 'cosine' needs to know how many steps it spans"),
    ({"grid": {"order": ["3"]}}, r"unknown setting 'order'"),
    ({"grid": {"heads": ["2"]}, "models": ("ngram",)}, r"unknown setting 'heads'.*own: order"),
    ({"grid": {"order": ["x"]}, "models": ("ngram",)}, r"--set order: 'x' is not an integer"),
    ({"grid": {"order": ["11"]}, "models": ("ngram",)}, r"order"),
])
def test_bad_training_settings_are_refused_before_anything_trains(
        split_task: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        plan_run(request(split_task, **options), REGISTRY)
    assert "\n" not in str(caught.value)


def test_an_optimizer_that_takes_no_weight_decay_refuses_one(split_task: Path) -> None:
    from dataclasses import replace

    from harness.plugin.registry import Provider

    registry = load_registry(autoload=False)
    plain = replace(registry.optimizer("sgd"), name="plain", takes_weight_decay=False)
    registry.optimizers.add(plain, Provider("test", "test", "0"))
    with pytest.raises(ConfigError, match=r"optimizer 'plain' takes no weight decay, but "
                       r"weight_decay=0.1 was given"):
        plan_run(request(split_task, recipe={"optimizer": "plain", "weight_decay": 0.1}),
                 registry)
    plan_run(request(split_task, recipe={"optimizer": "plain"}), registry)


def test_a_model_setting_reaches_the_model_and_its_default_otherwise(split_task: Path) -> None:
    plan = plan_run(request(split_task, models=("ngram", "lstm"), grid={"order": ["3", "4"]}),
                    REGISTRY)
    points = sorted({c.settings for c in plan.combinations})
    assert points == [(("order", 3),), (("order", 4),)]
    recipe = plan.recipe_at(points[0])
    ngram, lstm = REGISTRY.model("ngram"), REGISTRY.model("lstm")
    assert recipe.model_settings(declared=ngram.options).options == {"order": 3}
    assert recipe.model_settings(declared=lstm.options).options == {}
    default = plan_run(request(split_task, models=("ngram",)), REGISTRY).recipe
    assert default.model_settings(declared=ngram.options).options == {"order": 5}
