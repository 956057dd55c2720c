"""Hyper-parameter grids (--set): names, values, points, and what a grid run records."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from harness import load_run, run
from harness.results.compare import compare_runs
from harness.errors import ConfigError
from harness.plan.grid import grid_points, normalize_grid, parse_set_options
from harness.plan.plan import Combination
from helpers import make_plan
from harness.drive.resume import run_settings
from harness.plugin.manager import load_registry
from harness.results.report import render_report
from harness.results.stats import aggregate
from harness.results.store import RunStore

GRID = {"hidden": ["8", "16"], "lr": ["0.5", "1"]}


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_names_resolve_to_recipe_fields_and_values_take_their_type() -> None:
    grid = normalize_grid({"hidden": ["8", "16"], "lr": ["0.5", 1], "steps": [5],
                           "batch-size": ["4"], "precision": ["fp32", "bf16"]})
    assert grid == {"num_hiddens": (8, 16), "lr": (0.5, 1.0), "num_steps": (5,),
                    "batch_size": (4,), "precision": ("fp32", "bf16")}
    assert type(grid["lr"][1]) is float and type(grid["num_hiddens"][0]) is int


@pytest.mark.parametrize("grid, message", [
    ({"bogus": ["1"]}, r"unknown setting 'bogus'; choose from: .*num_hiddens \(hidden/hiddens\)"),
    ({"hidden": ["abc"]}, "'abc' is not an integer"),
    ({"hidden": ["1.5"]}, "'1.5' is not an integer"),
    ({"lr": ["fast"]}, "'fast' is not a number"),
    ({"lr": ["nan"]}, "not a finite number"),
    ({"lr": ["1", "1.0"]}, "1.0 given more than once"),
    ({"hidden": ["8"], "hiddens": ["16"]}, "num_hiddens is given twice"),
    ({"max_tokens": ["100"]}, "cannot vary within a run"),
    ({"lr": []}, "give a list of values"),
    ({"lr": "0.5"}, "give a list of values"),
])
def test_bad_grids_are_config_errors(grid: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        normalize_grid(grid)


def test_set_options_are_parsed_into_a_grid() -> None:
    assert parse_set_options(["hidden=256,512", "lr = 0.5, 1"]) == {
        "hidden": ["256", "512"], "lr": ["0.5", "1"]}
    for bad in ["lr", "=1", "lr=", "lr=1,,2"]:
        with pytest.raises(ConfigError, match="--set takes NAME=VALUE"):
            parse_set_options([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_set_options(["lr=1", "lr=2"])


def test_points_are_the_cartesian_product_and_no_grid_is_one_empty_point() -> None:
    assert grid_points({"a": (1, 2), "b": (3,)}) == [(("a", 1), ("b", 3)), (("a", 2), ("b", 3))]
    assert grid_points({}) == [()]


def test_settings_are_in_the_key_label_and_dict_of_a_combination() -> None:
    combo = Combination("scratch", "sequential", 2, (("num_hiddens", 8), ("lr", 0.5)))
    assert combo.key == "scratch__sequential__num_hiddens-8__lr-0.5__seed2"
    assert combo.label == "scratch/sequential/num_hiddens=8/lr=0.5/seed2"
    assert Combination.from_dict(json.loads(json.dumps(combo.to_dict()))) == combo
    assert Combination("scratch", "sequential", 2).key == "scratch__sequential__seed2"


def test_the_plan_multiplies_the_grid_and_validates_every_point(small_task: Path) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["scratch", "nnrnn"], ["sequential"], [0, 1], str(small_task),
                     grid=GRID)
    assert len(plan.combinations) == 2 * 1 * 2 * 4
    assert len({c.key for c in plan.combinations}) == len(plan.combinations)
    assert run_settings(plan).to_json()["grid"] == {"num_hiddens": [8, 16], "lr": [0.5, 1.0]}
    combo = next(c for c in plan.combinations if dict(c.settings) == {"num_hiddens": 16,
                                                                      "lr": 0.5})
    recipe = plan.recipe_for(combo)
    assert (recipe.num_hiddens, recipe.lr, recipe.epochs) == (16, 0.5, plan.recipe.epochs)
    with pytest.raises(ConfigError, match=r"--set num_steps=500: .*needs at least"):
        make_plan(registry, ["scratch"], ["sequential"], [0], str(small_task),
                  grid={"steps": ["5", "500"]})
    with pytest.raises(ConfigError, match="lr given both as an option and in --set"):
        make_plan(registry, ["scratch"], ["sequential"], [0], str(small_task), {"lr": 2.0},
                  grid={"lr": ["1"]})


@pytest.fixture(scope="module")
def grid_run(module_small_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real serial grid run: scratch x sequential x hidden 8,16 x lr 0.5,1 x seeds 0,1."""
    with one_thread():
        return run(models=["scratch"], samplers=["sequential"], seeds=[0, 1],
                   task=str(module_small_task), output_dir=tmp_path_factory.mktemp("grid"),
                   quiet=True, epochs=2, grid=GRID).path


def test_every_record_carries_its_settings_and_trains_with_them(grid_run: Path) -> None:
    records = RunStore.open(grid_run).records()
    assert len(records) == 8 and all(r.status == "ok" for r in records)
    for record in records:
        settings = record.settings
        assert set(settings) == {"num_hiddens", "lr"}
        assert record.model_settings["num_hiddens"] == settings["num_hiddens"]
        assert record.key == Combination(record.model, record.sampler, record.seed,
                                         tuple(record.settings.items())).key
    assert {(r.settings["num_hiddens"], r.settings["lr"]) for r in records} == {
        (8, 0.5), (8, 1.0), (16, 0.5), (16, 1.0)}
    # The hidden size changes the model, and the learning rate changes what it learns.
    params = {r.settings["num_hiddens"]: r.num_params for r in records}
    assert params[8] < params[16]
    ppl = {(r.settings["lr"], r.seed): r.metric("train_ppl") for r in records
           if r.settings["num_hiddens"] == 8}
    assert ppl[(0.5, 0)] != ppl[(1.0, 0)]
    manifest = json.loads((grid_run / "manifest.json").read_text())
    assert manifest["settings"]["grid"] == {"num_hiddens": [8, 16], "lr": [0.5, 1.0]}
    assert manifest["plan"]["combinations"][0]["settings"] == {"num_hiddens": 8, "lr": 0.5}


def test_summaries_and_the_report_group_by_setting(grid_run: Path) -> None:
    summary = aggregate(load_run(grid_run))
    assert list(summary.columns[:4]) == ["model", "sampler", "setting.lr",
                                         "setting.num_hiddens"]
    assert len(summary) == 4 and set(summary["n"]) == {2}
    report = render_report(RunStore.open(grid_run))
    assert "| lr " in report and "0.5, 1.0 (--set: one group each)" in report
    assert r"scratch/sequential/num\_hiddens=16/lr=0.5/seed1 train" in report  # curves
    assert report.count("#### scratch / sequential / lr=") == 4  # one chart per group


def test_compare_aligns_grid_runs_group_by_group(grid_run: Path, module_small_task: Path,
                                                 tmp_path: Path) -> None:
    # Another run over part of the grid: the shared point lines up, the others are missing.
    with one_thread():
        other = run(models=["scratch"], samplers=["sequential"], seeds=[0, 1],
                    task=str(module_small_task), output_dir=tmp_path, quiet=True, epochs=2,
                    grid={"hidden": [8], "lr": [0.5, 2.0]}).path
    table = compare_runs([grid_run, other]).table
    train = table[table["metric"] == "train_ppl"].set_index(
        ["setting.num_hiddens", "setting.lr"])
    assert train.loc[(8, 0.5), "change"] == pytest.approx(0.0)  # same seeds, same numbers
    assert train.loc[(16, 1.0), "verdict"] == "missing in B"
    assert train.loc[(8, 2.0), "verdict"] == "missing in A"
