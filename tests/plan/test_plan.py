from pathlib import Path

import pytest

from harness import hookimpl
from harness.plugin.contracts import ModelSpec
from harness.errors import ConfigError
from harness.plan.plan import Combination, build_plan
from helpers import make_plan
from harness.plugin.manager import load_registry
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
    plan = build_plan(load_registry(), combos, task=str(small_task), overrides={"epochs": 2})
    assert plan.combinations == combos and plan.recipe.epochs == 2
    assert plan.task_ref == str(small_task.resolve())
    with pytest.raises(ConfigError, match="unknown model"):
        build_plan(load_registry(), (Combination("nope", "random", 0),), task=str(small_task))


def test_a_grid_is_checked_against_each_points_recipe_not_the_unused_base(
        small_task: Path) -> None:
    # 20 training tokens: the base batch 4 x 5 steps needs 26, but every point fits.
    tiny = {"max_tokens": 20, "valid_tokens": 0}
    plan = make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task), tiny,
                     grid={"batch-size": ["1", "2"]})
    assert [dict(c.settings) for c in plan.combinations] == [{"batch_size": 1},
                                                             {"batch_size": 2}]
    with pytest.raises(ConfigError, match=r"^--set batch_size=8: .*batch_size 8 x num_steps 5 "
                       r"needs at least 46; other points that do not fit: \(batch_size=9\)$"):
        make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task), tiny,
                  grid={"batch-size": ["2", "8", "9"]})
    with pytest.raises(ConfigError, match="batch_size 4 x num_steps 5 needs at least 26"):
        make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task), tiny)


@pytest.mark.parametrize("models,samplers,message", [
    ([], ["sequential"], r"^--models is empty; .*choose from: .*scratch"),
    (["scratch"], [], r"^--samplers is empty; .*choose from: .*sequential")])
def test_an_empty_list_of_models_or_samplers_is_refused_naming_the_option(
        small_task: Path, models: list[str], samplers: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(load_registry(), models, samplers, [0], str(small_task))


def test_a_name_given_twice_trains_once(small_task: Path) -> None:
    plan = make_plan(load_registry(), ["scratch", "nnrnn", "scratch"],
                     ["random", "random"], [0], str(small_task))
    assert [(c.model, c.sampler) for c in plan.combinations] == [("scratch", "random"),
                                                                 ("nnrnn", "random")]
