"""Observers (--track) hear a run's events from the driver's main process, in order, with
the stored curves and records; a failing observer is dropped with one warning and costs
no result."""

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness import hookimpl, resume, run
from harness.cli import main
from harness.drive.observers import Observers
from harness.errors import ConfigError
from harness.execute.signals import RunInterrupted
from harness.plugin.contracts import ModelSpec, Observer, ObserverSpec
from harness.plugin.manager import AUTOLOAD_ENV, load_registry
from harness.results.store import RunStore

from fake_plugins import make_distribution


class Recorder:
    """An observer writing down every event it hears (with the process that heard it)."""

    def __init__(self, events: list[tuple], fail_at: str | None = None) -> None:
        self.events, self.fail_at = events, fail_at

    def _note(self, *event: Any) -> None:
        self.events.append((*event, os.getpid()))
        if event[0] == self.fail_at:
            raise RuntimeError(f"{self.fail_at} broke\non two lines")

    def run_started(self, run_dir, manifest):
        self._note("run_started", run_dir, manifest)

    def epoch(self, record, point):
        self._note("epoch", record.key, point)

    def evaluation(self, record, row):
        self._note("evaluation", record.key, row)

    def record(self, record, curve):
        self._note("record", record, curve)

    def run_finished(self, status):
        self._note("run_finished", status)


def registry_with(**observers: Any):
    """The built-in plugins and observers ``name=factory``."""
    class Plugin:
        @hookimpl
        def register_observers(self, register):
            for name, factory in observers.items():
                register(ObserverSpec(name, factory))

    return load_registry(autoload=False, extra=[Plugin()])


def kinds(events: list[tuple]) -> list[str]:
    return [event[0] if event[0] in ("run_started", "run_finished") else
            f"{event[0]}:{event[1] if isinstance(event[1], str) else event[1].key}"
            for event in events]


def test_events_come_in_order_with_the_stored_curves_and_records(small_task: Path,
                                                                 tmp_path: Path) -> None:
    events: list[tuple] = []
    registry = registry_with(recorder=lambda: Recorder(events))
    result = run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=2, track=["recorder"],
                 registry=registry)
    store = RunStore.open(result.path)
    keys = [r.key for r in store.records()]  # in the order they landed
    assert kinds(events) == ["run_started", *(f"{kind}:{key}" for key in keys
                                              for kind in ("epoch", "epoch", "record")),
                             "run_finished"]
    assert {event[-1] for event in events} == {os.getpid()}
    run_dir, manifest = events[0][1:3]
    assert run_dir == result.path and manifest["run_id"] == result.path.name
    assert manifest["status"] == "running" and manifest["settings"]["models"] == ["scratch"]
    for key, record in zip(keys, store.records()):
        points = [e[2] for e in events if e[0] == "epoch" and e[1] == key]
        assert [p["epoch"] for p in points] == [1, 2]
        stored = store.curve(key)
        assert [p["train_ppl"] for p in points] == [row["train_ppl"] for row in stored]
        (heard,) = [e for e in events if e[0] == "record" and e[1].key == key]
        assert heard[1] == record and heard[2] == points
    assert events[-1][1] == "complete" and result.status == "complete"


def test_a_held_out_task_sends_evaluation_events(small_task: Path, tmp_path: Path) -> None:
    small_task.write_text(small_task.read_text().replace(
        "[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\ntest = 0.1\n[recipe]"))
    events: list[tuple] = []
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, track=["recorder"], budget_tokens=600,
                 eval_tokens=200, registry=registry_with(recorder=lambda: Recorder(events)))
    rows = [e[2] for e in events if e[0] == "evaluation"]
    assert not [e for e in events if e[0] == "epoch"] and len(rows) >= 3
    stored = RunStore.open(result.path).curve("scratch__sequential__seed0")
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in stored]
    assert [r["valid_bpc"] for r in rows] == pytest.approx([r["valid_bpc"] for r in stored])
    assert kinds(events)[-2:] == ["record:scratch__sequential__seed0", "run_finished"]


def test_a_failing_observer_is_dropped_with_one_warning_and_the_results_kept(
        small_task: Path, tmp_path: Path) -> None:
    events: list[tuple] = []
    broken: list[tuple] = []
    registry = registry_with(broken=lambda: Recorder(broken, fail_at="epoch"),
                             recorder=lambda: Recorder(events))
    with pytest.warns(RuntimeWarning) as caught:
        result = run(models=["scratch"], samplers=["sequential", "random"], quiet=True,
                     task=str(small_task), output_dir=tmp_path, epochs=2,
                     track=["broken", "recorder"], registry=registry)
    assert result.status == "complete" and len(result.table) == 2
    (warning,) = [str(w.message) for w in caught]
    assert warning == ("observer 'broken' failed at epoch and is dropped for the rest of the "
                       "run (the results are kept): RuntimeError: epoch broke on two lines")
    assert kinds(broken) == ["run_started", kinds(events)[1]]  # nothing after its failure
    assert kinds(events)[-1] == "run_finished" and len(kinds(events)) == 8


def test_an_observer_whose_factory_fails_is_left_out(small_task: Path, tmp_path: Path) -> None:
    def unbuildable():
        raise ImportError("no module named 'tracker'")

    events: list[tuple] = []
    registry = registry_with(unbuildable=unbuildable, recorder=lambda: Recorder(events))
    with pytest.warns(RuntimeWarning, match="observer 'unbuildable' failed at start and is "
                                            "dropped .*: ImportError: no module named"):
        result = run(models=["scratch"], samplers=["sequential"], quiet=True, epochs=1,
                     task=str(small_task), output_dir=tmp_path,
                     track=["unbuildable", "recorder"], registry=registry)
    assert result.status == "complete"
    assert kinds(events) == ["run_started", "epoch:scratch__sequential__seed0",
                             "record:scratch__sequential__seed0", "run_finished"]


def test_failed_combinations_are_heard_and_the_end_says_partial(small_task: Path,
                                                                tmp_path: Path) -> None:
    def broken(vocab_size, settings, device):
        raise RuntimeError("no such layer")

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("broken", broken))

        @hookimpl
        def register_observers(self, register):
            register(ObserverSpec("recorder", lambda: Recorder(events)))

    events: list[tuple] = []
    registry = load_registry(autoload=False, extra=[Plugin()])
    run(models=["broken"], samplers=["sequential"], task=str(small_task), quiet=True,
        output_dir=tmp_path, epochs=1, track=["recorder"], registry=registry)
    assert kinds(events) == ["run_started", "record:broken__sequential__seed0",
                             "run_finished"]
    record, curve = events[1][1:3]
    assert record.status == "failed" and "no such layer" in record.error and curve == []
    assert events[2][1] == "partial"


def test_events_of_worker_processes_are_replayed_in_the_driver(small_task: Path,
                                                               tmp_path: Path,
                                                               site: Path) -> None:
    log = tmp_path / "events.txt"
    make_distribution(site, "fake-pids", "0.1", "fake_pids", f"""
        import os
        from harness import hookimpl
        from harness.plugin.contracts import Observer, ObserverSpec

        class Pids(Observer):
            def epoch(self, record, point):
                with open({str(log)!r}, "a") as f:
                    f.write(f"epoch {{record.key}} {{os.getpid()}}\\n")

            def record(self, record, curve):
                with open({str(log)!r}, "a") as f:
                    f.write(f"record {{record.key}} {{os.getpid()}}\\n")

        @hookimpl
        def register_observers(register):
            register(ObserverSpec("pids", Pids))
    """)
    run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
        output_dir=tmp_path / "out", quiet=True, epochs=2, jobs=2, track=["pids"],
        registry=load_registry(autoload=True))
    events = [line.split() for line in log.read_text().splitlines()]
    assert {pid for _, _, pid in events} == {str(os.getpid())}
    assert sorted(kind for kind, _, _ in events) == ["epoch"] * 4 + ["record"] * 2


def test_resume_exports_only_the_records_it_adds(small_task: Path, tmp_path: Path) -> None:
    first = run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
                output_dir=tmp_path, quiet=True, epochs=1)
    lines = (first.path / "records.jsonl").read_text().splitlines(keepends=True)
    (first.path / "records.jsonl").write_text(lines[0])  # as if stopped after one
    events: list[tuple] = []
    resume(first.path, quiet=True, track=["recorder"],
           registry=registry_with(recorder=lambda: Recorder(events)))
    missing = json.loads(lines[1])["key"]
    assert kinds(events) == ["run_started", f"epoch:{missing}", f"record:{missing}",
                             "run_finished"]
    assert events[0][2]["resumed"][0]["combinations"] == 1
    with pytest.raises(ConfigError, match="unknown observer 'nope'; choose from: mlflow, "):
        resume(first.path, quiet=True, track=["nope"])


def test_a_bad_track_is_refused_before_a_run_directory_exists(small_task: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^unknown observer 'tensorbord'; choose from: "
                                          r"mlflow, tensorboard$"):
        run(models=["scratch"], task=str(small_task), output_dir=tmp_path / "out",
            track=["tensorbord"], quiet=True)
    with pytest.raises(ConfigError, match="track must be a list of observer names"):
        run(models=["scratch"], task=str(small_task), output_dir=tmp_path / "out",
            track="tensorboard", quiet=True)
    assert not (tmp_path / "out").exists()


def test_the_cli_takes_track_for_a_run_and_a_resume(small_task: Path, tmp_path: Path,
                                                    site: Path) -> None:
    make_distribution(site, "fake-tally", "0.1", "fake_tally", f"""
        from pathlib import Path
        from harness import hookimpl
        from harness.plugin.contracts import Observer, ObserverSpec

        class Tally(Observer):
            def record(self, record, curve):
                with open({str(tmp_path / "tally.txt")!r}, "a") as f:
                    f.write(record.label + "\\n")

        @hookimpl
        def register_observers(register):
            register(ObserverSpec("tally", Tally))
    """)
    env = {AUTOLOAD_ENV: None}
    bad = CliRunner().invoke(main, ["run", "--task", str(small_task), "--track", "tally,nope",
                                    "-o", str(tmp_path / "out")], env=env)
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "Error: unknown observer 'nope'; choose from: mlflow, tally, tensorboard"]
    args = ["run", "--task", str(small_task), "--models", "scratch", "--samplers",
            "sequential,random", "--epochs", "1", "-q", "-o", str(tmp_path / "out")]
    assert CliRunner().invoke(main, [*args, "--track", "tally"], env=env).exit_code == 0
    assert (tmp_path / "tally.txt").read_text().splitlines() == [
        "scratch/sequential/seed0", "scratch/random/seed0"]
    (run_dir,) = (tmp_path / "out").iterdir()
    lines = (run_dir / "records.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "records.jsonl").write_text(lines[0])
    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--track", "tally",
                                        "-q"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "tally.txt").read_text().splitlines()[2:] == ["scratch/random/seed0"]


def test_each_observer_gets_its_own_copy_of_what_it_hears() -> None:
    class Spoiler(Observer):
        def epoch(self, record, point):
            point["train_ppl"] = -1.0

    heard: list[tuple] = []
    observers = Observers([("spoiler", Spoiler()), ("recorder", Recorder(heard))])

    class Record:
        key = "k"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        observers.record(Record(), [{"epoch": 1, "train_ppl": 3.0}])
    assert heard[0][2] == {"epoch": 1, "train_ppl": 3.0}
    assert heard[1][2] == [{"epoch": 1, "train_ppl": 3.0}]


def test_ctrl_c_in_an_observer_stops_the_run_and_observers_hear_its_end(
        small_task: Path, tmp_path: Path) -> None:
    class Interrupting(Recorder):
        def record(self, record, curve):
            super().record(record, curve)
            raise KeyboardInterrupt  # as Ctrl-C would, while it exports

    events: list[tuple] = []
    registry = registry_with(interrupting=lambda: Interrupting(events))
    with pytest.raises(RunInterrupted):
        run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
            output_dir=tmp_path / "out", quiet=True, epochs=1, track=["interrupting"],
            registry=registry)
    (run_dir,) = (tmp_path / "out").iterdir()
    store = RunStore.open(run_dir)
    assert [r.key for r in store.records()] == [events[2][1].key]  # on disk, kept
    assert store.manifest().status == "interrupted"
    assert kinds(events)[-1] == "run_finished" and events[-1][1] == "interrupted"
