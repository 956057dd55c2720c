from pathlib import Path

import pytest

from harness import hookimpl
from harness.contracts import ModelSpec
from harness.errors import ConfigError
from harness.plan import Combination, build_plan, make_plan
from harness.plugins import load_registry
from harness_builtins.rnn import build_scratch


class LookAlikes:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec("a/b", build_scratch))
        register(ModelSpec("a_b", build_scratch))


def test_names_that_sanitise_to_the_same_file_name_are_refused(small_task: Path) -> None:
    registry = load_registry(autoload=False, extra=[LookAlikes()])
    with pytest.raises(ConfigError, match="would share the file name 'a_b__sequential__seed0'"):
        make_plan(registry, ["a/b", "a_b"], ["sequential"], [0], str(small_task))


def test_build_plan_keeps_the_given_combinations_and_remembers_the_task_file(
        small_task: Path) -> None:
    combos = (Combination("nnrnn", "random", 4), Combination("scratch", "sequential", 1))
    plan = build_plan(load_registry(), combos, str(small_task), {"epochs": 2})
    assert plan.combinations == combos and plan.recipe.epochs == 2
    assert plan.task_ref == str(small_task.resolve())
    with pytest.raises(ConfigError, match="unknown model"):
        build_plan(load_registry(), (Combination("nope", "random", 0),), str(small_task))
