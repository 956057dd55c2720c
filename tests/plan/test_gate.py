"""The gate: every request is checked once, field by field, before any work starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan.gate import MAX_COMBINATIONS, check_executor, plan_run, request_seeds
from harness.plan.request import ExecutorChoice, RunRequest
from harness.plugin.manager import load_registry


def request(task: Path, **options: object) -> RunRequest:
    options.setdefault("models", ("scratch",))
    options.setdefault("samplers", ("sequential",))
    return RunRequest.from_options(task=str(task), quiet=True, **options)


@pytest.mark.parametrize(("choice", "message"), [
    (ExecutorChoice(kind="serial", jobs=2), "--jobs, --timeout and --isolate need worker"),
    (ExecutorChoice(kind="serial", isolate=True), "--jobs, --timeout and --isolate need"),
    (ExecutorChoice(kind="ray", jobs=2), "--jobs is the process executor's"),
    (ExecutorChoice(address="auto"), "--address and --cpus-per-task go with --executor ray"),
    (ExecutorChoice(kind="processes", cpus_per_task=2), "--address and --cpus-per-task go"),
    (ExecutorChoice(jobs=0), "--jobs must be a positive integer, got 0"),
    (ExecutorChoice(kind="ray", cpus_per_task=0), "--cpus-per-task must be a positive integer"),
    (ExecutorChoice(timeout=float("inf")), "--timeout must be a finite number of seconds > 0"),
    (ExecutorChoice(timeout=0), "--timeout must be a finite number of seconds > 0"),
    (ExecutorChoice(kind="threads"), "unknown executor 'threads'; choose from: serial"),
])
def test_executor_options_that_do_not_go_together_are_refused(choice: ExecutorChoice,
                                                              message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_executor(choice)


@pytest.mark.parametrize(("choice", "kind"), [
    (ExecutorChoice(), "serial"), (ExecutorChoice(jobs=2), "processes"),
    (ExecutorChoice(timeout=5), "processes"), (ExecutorChoice(isolate=True), "processes"),
    (ExecutorChoice(kind="ray", timeout=5), "ray"),
])
def test_the_executor_defaults_to_serial_unless_an_option_needs_workers(
        choice: ExecutorChoice, kind: str) -> None:
    check_executor(choice)
    assert choice.resolved_kind == kind


def test_seeds_come_from_the_list_or_repeats_and_a_repeat_runs_once() -> None:
    assert request_seeds(RunRequest()) == [0]
    assert request_seeds(RunRequest(seeds=(2, 1, 2))) == [2, 1]
    assert request_seeds(RunRequest(repeats=3)) == [0, 1, 2]
    with pytest.raises(ConfigError, match="not both"):
        request_seeds(RunRequest(seeds=(1,), repeats=2))
    with pytest.raises(ConfigError, match="at least one seed"):
        request_seeds(RunRequest(seeds=()))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("seeds", 1, "seeds must be a list of integers, got 1"),
    ("seeds", 2.5, "seeds must be a list of integers, got 2.5"),
    ("models", 1, "models must be a list of names, got 1"),
    ("samplers", 1, "samplers must be a list of names, got 1"),
])
def test_a_request_field_that_is_not_a_list_is_one_line(small_task: Path, tmp_path: Path,
                                                        field: str, value: object,
                                                        message: str) -> None:
    # Built directly (the Python API), not by from_options, which makes lists of them.
    options = {"models": ("scratch",), "samplers": ("sequential",), field: value}
    plain = RunRequest(task=str(small_task), quiet=True, output_dir=tmp_path, **options)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        plan_run(plain, load_registry())


def test_a_billion_repeats_is_refused_at_once(small_task: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"--repeats must be a positive integer at most "
                                          f"{MAX_COMBINATIONS}, got 1000000000"):
        plan_run(request(small_task, repeats=1_000_000_000, output_dir=tmp_path / "out"),
                 load_registry())
    assert time.perf_counter() - started < 5  # no list of a billion seeds was built
    assert not (tmp_path / "out").exists()


def test_a_grid_too_large_to_train_is_refused(small_task: Path) -> None:
    grid = {"lr": [0.1 * i for i in range(1, 1001)], "clip": [0.1 * i for i in range(1, 201)]}
    with pytest.raises(ConfigError, match="200000 combinations"):
        plan_run(request(small_task, grid=grid), load_registry())


def test_without_names_the_task_chooses_and_all_means_every_registered(
        small_task: Path, tmp_path: Path) -> None:
    registry = load_registry()
    plan = plan_run(request(small_task, models=("all",), output_dir=tmp_path), registry)
    # every registered model that trains on d2l's kind of task: count models need splits
    assert [c.model for c in plan.combinations] == [
        m for m in registry.models.names() if registry.model(m).trained_by == "gradient"]
    assert "ngram" in registry.models.names()
    assert not any(c.model == "ngram" for c in plan.combinations)
    plan = plan_run(request(small_task, models=None, samplers=None, output_dir=tmp_path),
                    registry)
    assert {(c.model, c.sampler) for c in plan.combinations} == {
        (m, s) for m in ("scratch", "nnrnn") for s in ("sequential", "random",
                                                       "sequential-reset")}
    bare = tmp_path / "bare.toml"  # the same task without [defaults]
    bare.write_text(small_task.read_text().split("[defaults]")[0])
    with pytest.raises(ConfigError, match="the task names no default models; give --models"):
        plan_run(request(bare, models=None), registry)


@pytest.mark.parametrize(("options", "message"), [
    ({"models": ()}, "--models is empty; give model names or 'all'"),
    ({"samplers": ()}, "--samplers is empty"),
    ({"models": ("nope",)}, "unknown model 'nope'; choose from: gru, lstm"),
    ({"lr": 0.5, "grid": {"lr": [1.0]}}, "lr given both as an option and in --set"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_input_is_one_line_before_any_work(small_task: Path, tmp_path: Path,
                                               options: dict, message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        plan_run(request(small_task, output_dir=out, **options), load_registry())
    assert not out.exists()


@pytest.mark.parametrize("choice", [ExecutorChoice(), ExecutorChoice(jobs=2),
                                    ExecutorChoice(timeout=60)])
def test_every_executor_gets_the_model_dry_run(small_task: Path, tmp_path: Path,
                                               choice: ExecutorChoice) -> None:
    with pytest.raises(ConfigError, match="model 'scratch': .*cannot stack --layers 2"):
        plan_run(request(small_task, num_layers=2, executor=choice,
                         output_dir=tmp_path / "out"), load_registry())


def test_an_output_directory_that_cannot_be_written_is_refused(small_task: Path,
                                                               tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="output directory .* is not writable"):
        plan_run(request(small_task, output_dir=blocker / "runs"), load_registry())


def test_options_sort_themselves_into_request_executor_and_recipe() -> None:
    built = RunRequest.from_options(models=["a"], seeds=[1], jobs=2, epochs=3,
                                    output_dir="x", executor="processes")
    assert built.models == ("a",) and built.seeds == (1,)
    assert built.executor == ExecutorChoice(kind="processes", jobs=2)
    assert built.recipe == {"epochs": 3} and built.output_dir == Path("x")
    with pytest.raises(ConfigError, match="give executor options"):
        RunRequest.from_options(executor=ExecutorChoice(), jobs=2)
