"""The built-in trackers (--track tensorboard,mlflow): a tiny real run, read back with
TensorBoard's and MLflow's own readers. Skipped where the extra is not installed."""

import math
import os
import sys
from pathlib import Path

import pytest

from harness import run
from harness.errors import ConfigError
from harness.plugin.manager import load_registry
from harness.results.store import RunStore
from fake_plugins import BrokenModel
from harness_builtins.trackers import label_path


def finite(metrics) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}


@pytest.fixture(scope="module")
def tracked(module_small_task: Path, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """A d2l-task run exported to both trackers: two samplers and a model that fails."""
    pytest.importorskip("tensorboard", reason="needs pip install 'rnn-harness[tensorboard]'")
    pytest.importorskip("mlflow", reason="needs pip install 'rnn-harness[mlflow]'")

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        result = run(models=["scratch", "broken"], samplers=["sequential", "random"],
                     task=str(module_small_task), output_dir=tmp_path_factory.mktemp("runs"),
                     quiet=True, epochs=3, track=["tensorboard", "mlflow"],
                     registry=load_registry(autoload=False, extra=[BrokenModel()]))
        assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set for the export only
    assert result.status == "partial"
    return RunStore.open(result.path)


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def mlflow_runs(uri: str, experiment: str, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """MLflow's client of the store at ``uri``, and the runs of ``experiment`` by name."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to read
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return client, {r.info.run_name: r for r in client.search_runs([found.experiment_id])}


def test_tensorboard_event_files_hold_the_curves_and_records(tracked: RunStore) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    records = tracked.records()
    folders = {p.parent for p in (tracked.path / "tensorboard").rglob("events.out.tfevents.*")}
    assert folders == {tracked.path / "tensorboard" / label_path(r.label) for r in records}
    for record in records:
        events = accumulator(tracked.path / "tensorboard" / label_path(record.label))
        curve = tracked.curve(record.key)
        assert bool(curve) == record.ok
        for column in ("train_ppl", "tokens_per_sec", "valid_ppl") if curve else ():
            assert [e.step for e in events.Scalars(column)] == [row["epoch"] for row in curve]
            assert [e.value for e in events.Scalars(column)] == \
                pytest.approx([row[column] for row in curve], rel=1e-6)  # float32 in files
        results = {tag.removeprefix("result/"): events.Scalars(tag)[-1].value
                   for tag in events.Tags()["scalars"] if tag.startswith("result/")}
        assert results == pytest.approx(finite(record.metrics), rel=1e-6)
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert hparams.hparams["model"].string_value == record.model
        assert hparams.hparams["sampler"].string_value == record.sampler
        assert hparams.hparams["status"].string_value == record.status
        assert hparams.hparams["epochs"].number_value == 3
        (text,) = events.Tensors("record/text_summary")
        markdown = text.tensor_proto.string_val[0].decode()
        assert markdown.startswith(f"**{record.label}**: {record.status}")
        if not record.ok:
            assert "no such layer" in markdown


def test_mlflow_runs_hold_the_settings_curves_and_records(tracked: RunStore,
                                                          monkeypatch) -> None:
    client, runs = mlflow_runs((tracked.path / "mlruns").as_uri(), "harness-small",
                               monkeypatch)
    records = tracked.records()
    assert sorted(runs) == sorted(r.label for r in records)
    manifest = tracked.manifest()
    for record in records:
        found = runs[record.label]
        tags = found.data.tags
        assert tags["harness.run_dir"] == str(tracked.path.absolute())
        assert tags["harness.run_id"] == manifest.run_id == tracked.path.name
        assert (tags["harness.status"], tags["harness.model"], tags["harness.sampler"],
                tags["harness.seed"]) == (record.status, record.model, record.sampler, "0")
        assert found.info.status == ("FINISHED" if record.ok else "FAILED")
        assert found.data.params["model"] == record.model
        assert found.data.params["epochs"] == "3" and found.data.params["lr"] == "1.0"
        results = {k.removeprefix("result/"): v for k, v in found.data.metrics.items()
                   if k.startswith("result/")}
        assert results == finite(record.metrics)  # float64 in the store: exact
        history = client.get_metric_history(found.info.run_id, "train_ppl")
        curve = tracked.curve(record.key)
        assert [(m.step, m.value) for m in history] == \
            [(row["epoch"], row["train_ppl"]) for row in curve]
        if not record.ok:
            assert "no such layer" in tags["harness.error"]


def test_a_held_out_run_is_exported_by_training_tokens(small_task: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    pytest.importorskip("tensorboard", reason="needs pip install 'rnn-harness[tensorboard]'")
    pytest.importorskip("mlflow", reason="needs pip install 'rnn-harness[mlflow]'")
    small_task.write_text(small_task.read_text().replace(
        "[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\ntest = 0.1\n[recipe]"))
    tracker = tmp_path / "tracker"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.as_uri())  # the user's own tracker
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "my-experiment")
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path / "runs", quiet=True, budget_tokens=600, eval_tokens=200,
                 track=["mlflow", "tensorboard"])
    store = RunStore.open(result.path)
    (record,) = store.records()
    curve = store.curve(record.key)
    assert not (result.path / "mlruns").exists() and tracker.is_dir()
    client, runs = mlflow_runs(tracker.as_uri(), "my-experiment", monkeypatch)
    history = client.get_metric_history(runs[record.label].info.run_id, "valid_bpc")
    assert [(m.step, m.value) for m in history] == \
        [(row["tokens"], row["valid_bpc"]) for row in curve]
    results = {k.removeprefix("result/"): v for k, v in runs[record.label].data.metrics.items()
               if k.startswith("result/")}
    assert results == finite(record.metrics) and "test_bpc" in results
    events = accumulator(result.path / "tensorboard" / label_path(record.label))
    scalars = events.Scalars("valid_bpc")
    assert [e.step for e in scalars] == [row["tokens"] for row in curve]
    assert [e.value for e in scalars] == pytest.approx([r["valid_bpc"] for r in curve], rel=1e-6)
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([r["lr"] for r in curve])


def test_a_users_file_store_follows_mlflows_own_opt_in(small_task: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true: the harness opts
    in for the store it makes in the run directory, never for the user's. Without it the
    mlflow export is dropped with one warning, and the run and its other exports go on."""
    pytest.importorskip("tensorboard", reason="needs pip install 'rnn-harness[tensorboard]'")
    variables = pytest.importorskip("mlflow.environment_variables")
    if not hasattr(variables, "MLFLOW_ALLOW_FILE_STORE"):
        pytest.skip("this MLflow writes a file store without an opt-in")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "tracker").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.warns(RuntimeWarning, match="observer 'mlflow' failed at run_started and is "
                                            "dropped .*MLFLOW_ALLOW_FILE_STORE"):
        result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                     output_dir=tmp_path / "runs", quiet=True, epochs=1,
                     track=["mlflow", "tensorboard"])
    assert result.status == "complete"
    assert list((result.path / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_tracker_whose_library_is_missing_is_refused_up_front(
        name: str, small_task: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # not importable, as if not installed
    with pytest.raises(ConfigError) as info:
        run(models=["scratch"], task=str(small_task), output_dir=tmp_path / "out",
            track=[name], quiet=True)
    assert str(info.value) == f"--track {name} needs {name}: pip install 'rnn-harness[{name}]'"
    assert not (tmp_path / "out").exists()


def test_labels_become_safe_nested_folders() -> None:
    assert label_path("scratch/sequential/lr=0.5/seed0") == \
        Path("scratch", "sequential", "lr=0.5", "seed0")
    assert label_path("../x y/seed0") == Path("_", "x_y", "seed0")
