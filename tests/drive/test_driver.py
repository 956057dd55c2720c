import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from harness.results.schema import Record

import harness
from harness import hookimpl
from harness import load_run, load_runs, run, summarize_runs
from harness.plan.gate import MAX_TIMEOUT, check_timeout
from harness.errors import ConfigError
from harness.plugin.manager import load_registry
from harness.execute.processes import ProcessExecutor
from harness.results.frames import results_frame


def test_run_returns_the_table_that_load_run_reads_back(small_task: Path, tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["sequential", "random"], seeds=[0, 1],
                 task=str(small_task), output_dir=tmp_path, quiet=True, epochs=2)
    assert result.status == "complete"
    assert list(zip(result.table.sampler, result.table.seed)) == [
        ("random", 0), ("random", 1), ("sequential", 0), ("sequential", 1)]
    assert (result.table["status"] == "ok").all()
    loaded = load_run(result.path)
    assert loaded.drop(columns="run_id").equals(result.table)


def test_combinations_do_not_depend_on_order(small_task: Path, tmp_path: Path) -> None:
    a = run(models=["scratch"], samplers=["random", "sequential"], task=str(small_task),
            output_dir=tmp_path, quiet=True, epochs=2).table
    b = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
            output_dir=tmp_path, quiet=True, epochs=2).table
    assert a.loc[a.sampler == "sequential", "train_ppl"].item() == b["train_ppl"].item()


def test_a_failing_model_is_recorded_and_the_rest_still_run(small_task: Path,
                                                            tmp_path: Path) -> None:
    from fake_plugins import BrokenModel

    registry = load_registry(autoload=False, extra=[BrokenModel()])
    result = run(models=["broken", "scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, registry=registry, epochs=1)
    assert result.status == "partial"
    status = dict(zip(result.table.model, result.table.status))
    assert status == {"broken": "failed", "scratch": "ok"}
    assert "no such layer" in (result.path / "errors" / "broken__sequential__seed0.txt").read_text()


def test_bad_input_raises_before_any_run_directory(small_task: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run(models=["nope"], task=str(small_task), output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_numpy_seeds_become_plain_ints_and_repeats_run_once(small_task: Path,
                                                            tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["sequential"], seeds=np.array([1, 0, 1]),
                 task=str(small_task), output_dir=tmp_path, quiet=True, epochs=1)
    assert result.status == "complete" and sorted(result.table.seed) == [0, 1]
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["settings"]["seeds"] == [0, 1]


@pytest.mark.parametrize("seeds,message", [
    ([1.5], "seed must be an integer, got 1.5"),
    (["1"], "seed must be an integer, got '1'"),
    ([True], "seed must be an integer"),
    (3, "seeds must be a list of integers"),
    ([-1], "seed must be from 0 to 2**63 - 1"),
    ([2**63], "seed must be from 0 to 2**63 - 1"),
])
def test_bad_seeds_raise_before_any_run_directory(small_task: Path, tmp_path: Path,
                                                  seeds: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(models=["scratch"], seeds=seeds, task=str(small_task), output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("timeout", [math.inf, math.nan, 1e10, MAX_TIMEOUT + 1])
def test_an_executor_timeout_that_cannot_be_waited_for_is_refused_up_front(
        small_task: Path, tmp_path: Path, timeout: float) -> None:
    executor = ProcessExecutor(jobs=1)
    executor.timeout = timeout  # what ProcessExecutor(timeout=inf) lets through
    with pytest.raises(ConfigError, match="finite number of seconds > 0 and at most"):
        run(models=["scratch"], task=str(small_task), output_dir=tmp_path / "out",
            executor=executor)
    assert not (tmp_path / "out").exists()
    check_timeout(MAX_TIMEOUT)
    check_timeout(None)


def test_load_runs_stacks_runs_one_row_per_seed_with_run_ids(small_task: Path,
                                                              tmp_path: Path) -> None:
    paths = [run(models=["scratch"], samplers=["sequential"], seeds=[0, 1], task=str(small_task),
                 output_dir=tmp_path / "out", quiet=True, epochs=1, max_tokens=400).path
             for _ in range(2)]
    frame = load_runs(paths)
    assert len(frame) == 4 and frame["run_id"].tolist() == [p.name for p in paths for _ in (0, 1)]
    summary = summarize_runs(frame)
    assert summary.columns[0] == "run_id" and summary["run_id"].tolist() == [p.name for p in paths]
    assert summary["n"].tolist() == [2, 2] and summary["n_ok"].tolist() == [2, 2]
    assert summary["train_ppl_mean"].iloc[0] == pytest.approx(frame["train_ppl"][:2].mean())


def test_per_record_settings_become_columns_after_the_sampler() -> None:
    frame = results_frame([
        Record(key="a", model="m", sampler="s", seed=0, settings={"lr": 2.0}),
        Record(key="b", model="m", sampler="s", seed=0, settings={"lr": 0.5}),
        Record(key="c", model="m", sampler="t", seed=0),
    ])
    assert list(frame.columns[:4]) == ["model", "sampler", "setting.lr", "seed"]
    assert frame["setting.lr"].tolist()[:2] == [0.5, 2.0]
    assert len(summarize_runs(frame)) == 3


class Hostile:
    """Names chosen to escape the run directory if they were used as paths."""

    @hookimpl
    def register_models(self, register):
        from harness.plugin.contracts import ModelSpec
        from harness_builtins.rnn import build_scratch

        register(ModelSpec("../../../escaped-model", build_scratch))

    @hookimpl
    def register_samplers(self, register):
        from harness.plugin.contracts import SamplerSpec
        from harness_builtins.samplers import seq_data_iter_sequential

        register(SamplerSpec("/tmp/../../escaped-sampler", seq_data_iter_sequential, True))


def test_hostile_names_write_nothing_outside_the_run_directory(small_task: Path,
                                                               tmp_path: Path) -> None:
    task = tmp_path / "hostile.toml"
    task.write_text(small_task.read_text().replace('name = "small"', 'name = "../../up"'))
    before = set(tmp_path.rglob("*"))
    registry = load_registry(autoload=False, extra=[Hostile()])
    result = run(models=["../../../escaped-model"], samplers=["/tmp/../../escaped-sampler"],
                 task=str(task), output_dir=tmp_path / "out", quiet=True, registry=registry,
                 epochs=1, save_checkpoints=True)
    assert result.status == "complete"
    assert result.path.parent == tmp_path / "out"
    written = set(tmp_path.rglob("*")) - before - {tmp_path / "out", result.path}
    assert written and all(result.path in p.parents for p in written)
    assert (result.path / "checkpoints" / "escaped-model__tmp_.._.._escaped-sampler__seed0.pt"
            ).is_file()
    assert not list(Path("/tmp").glob("escaped-*"))


def test_a_signal_while_the_report_is_written_leaves_a_finished_run_finished(
        small_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import harness.drive.driver

    write_report = harness.drive.driver.write_report

    def interrupted_report(store):  # Ctrl-C just as the run ends
        os.kill(os.getpid(), signal.SIGINT)
        return write_report(store)

    monkeypatch.setattr(harness.drive.driver, "write_report", interrupted_report)
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=1)
    assert result.status == "complete" and (result.path / "report.md").is_file()
    assert json.loads((result.path / "manifest.json").read_text())["status"] == "complete"


def enospc() -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_the_start_is_one_line_and_leaves_no_run(
        small_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from harness.cli import main
    from harness.results.store import RunStore

    def full(*args, **kwargs):
        raise enospc()

    monkeypatch.setattr(RunStore, "write_manifest", full)  # the directory, but no room
    result = CliRunner().invoke(main, ["run", "--task", str(small_task), "-m", "scratch",
                                       "-s", "sequential", "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot create a run directory in {tmp_path / 'out'} "
        "(No space left on device)"]
    assert list((tmp_path / "out").iterdir()) == []  # no run without a manifest


def test_a_disk_that_fills_during_the_run_keeps_what_was_recorded_and_resumes(
        small_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import StorageError
    from harness.results.store import RunStore

    append = RunStore.append_record
    calls = []

    def fills_up(self, record, *args, **kwargs):
        calls.append(record.key)
        if len(calls) > 1:
            raise enospc()
        return append(self, record, *args, **kwargs)

    monkeypatch.setattr(RunStore, "append_record", fills_up)
    with pytest.raises(StorageError, match=r"^cannot write to the run directory \(No space "
                       r"left on device\): .*; free space, then harness run --resume") as error:
        run(models=["scratch"], samplers=["sequential", "random", "sequential-reset"],
            task=str(small_task), output_dir=tmp_path / "out", quiet=True, epochs=1)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert str(run_dir) in str(error.value)
    store = RunStore.open(run_dir)
    assert store.manifest().status == "aborted"  # not "complete", and the truth
    assert [r.key for r in store.records()] == calls[:1]
    monkeypatch.setattr(RunStore, "append_record", append)  # space freed
    resumed = harness.resume(run_dir, quiet=True)
    assert resumed.status == "complete" and len(resumed.table) == 3


def test_a_report_that_cannot_be_written_says_so_and_the_status_stays_true(
        small_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.drive.driver
    from harness.errors import StorageError
    from harness.results.store import RunStore

    def full(store):
        raise enospc()

    monkeypatch.setattr(harness.drive.driver, "write_report", full)
    with pytest.raises(StorageError, match="the run is complete, but its manifest or report "
                       "could not be written"):
        run(models=["scratch"], samplers=["sequential"], task=str(small_task),
            output_dir=tmp_path / "out", quiet=True, epochs=1)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert RunStore.open(run_dir).manifest().status == "complete"


@pytest.mark.parametrize("executor", ["processes", harness.ExecutorChoice(jobs=2)])
def test_an_executor_may_be_named_or_chosen_as_well_as_given(
        small_task: Path, tmp_path: Path, executor: object) -> None:
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path / "out", quiet=True, epochs=1, executor=executor)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert result.status == "complete" and manifest["executor"]["kind"] == "processes"


class Picky:
    """A model that refuses its settings once a marker file exists."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def build(self, vocab_size, settings, device):
        from harness_builtins.rnn import build_scratch

        if self.marker.exists():
            raise ValueError("picky today")
        return build_scratch(vocab_size, settings, device)

    @hookimpl
    def register_models(self, register):
        from harness.plugin.contracts import ModelSpec

        register(ModelSpec("picky", self.build))


def test_resume_dry_runs_the_models_too(small_task: Path, tmp_path: Path) -> None:
    from harness.errors import ConfigError

    registry = load_registry(autoload=False, extra=[Picky(tmp_path / "marker")])
    result = run(models=["picky"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path / "out", quiet=True, epochs=1, registry=registry)
    (tmp_path / "marker").touch()
    with pytest.raises(ConfigError, match="model 'picky': picky today"):
        harness.resume(result.path, registry=registry, quiet=True)


def test_the_plans_determinism_is_the_requests_not_the_environments(
        small_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.machine.determinism import STRICT, VARIABLE
    from helpers import make_plan

    monkeypatch.setenv(VARIABLE, STRICT)  # left set by someone else
    plan = make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task))
    assert plan.reproducible is False
