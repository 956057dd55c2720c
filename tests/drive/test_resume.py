"""Interrupting a run (a real process sent SIGINT or SIGTERM) and resuming it."""

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness import load_run, resume, run
from harness.execute.executor import SerialExecutor
from harness.cli import main
from harness.errors import ConfigError, CorpusError
from helpers import make_plan, manifest_for
from harness.results.efficiency import TIMED
from harness.results.schema import Manifest
from harness.train.combination import base_record

from harness.plugin.manager import load_registry
from harness.drive.resume import load_plan, remaining
from harness.results.store import RunStore


def round_trip(manifest: Manifest) -> Manifest:
    """As stored on disk and read back."""
    return Manifest.from_json(json.loads(json.dumps(manifest.to_json())))

GRID = ["--models", "scratch", "--samplers", "sequential,random,sequential-reset",
        "--epochs", "3"]
COLUMNS = ["model", "sampler", "seed", "status", "train_ppl", "valid_ppl", "num_params"]


def launch(small_task: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--task", str(small_task), *GRID,
         "-o", str(out), "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_first_record(out: Path, process: subprocess.Popen) -> Path:
    """The run directory, once its records.jsonl holds a complete line."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for records in out.glob("*/records.jsonl"):
            if records.read_text().endswith("\n"):
                return records.parent
        if process.poll() is not None:
            pytest.fail(f"the run ended before it was signalled: {process.communicate()}")
        time.sleep(0.02)
    pytest.fail("no record appeared")


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_sigint_keeps_finished_work_and_resume_gives_the_uninterrupted_table(
        small_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = launch(small_task, out)
    run_dir = wait_for_first_record(out, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"harness run --resume {run_dir}" in err
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    done = len(records_of(run_dir))
    assert 1 <= done < 3

    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "-q"])
    assert resumed.exit_code == 0, resumed.output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["resumed"][0]["combinations"] == 3 - done
    assert len(records_of(run_dir)) == 3  # only the missing ones ran
    reference = run(models=["scratch"], samplers=["sequential", "random", "sequential-reset"],
                    epochs=3, task=str(small_task), output_dir=tmp_path / "ref", quiet=True)
    assert load_run(run_dir)[COLUMNS].equals(reference.table[COLUMNS])
    assert len(resumed.stdout.splitlines()) == 2 + 3  # the table of the whole run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_under_jobs_marks_the_run_interrupted_and_leaves_no_workers(
        small_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = launch(small_task, out, "--jobs", "2")
    run_dir = wait_for_first_record(out, process)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert all(r["status"] == "ok" for r in records_of(run_dir))
    assert workers
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_resume_refuses_options_that_change_what_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--resume", str(tmp_path), "--epochs", "5",
                                       "--models", "nnrnn", "--hiddens", "8", "--set", "lr=1"])
    assert result.exit_code == 2
    assert "drop --models, --epochs, --hiddens, --set (" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_of_a_grid_runs_only_its_missing_points(small_task: Path, tmp_path: Path) -> None:
    grid = ["--set", "hidden=8,16", "--set", "lr=0.5,1"]
    full = CliRunner().invoke(main, ["run", "--task", str(small_task), "--models", "scratch",
                                     "--samplers", "sequential", "--epochs", "2", *grid,
                                     "-o", str(tmp_path / "out"), "-q", "--format", "csv"])
    assert full.exit_code == 0, full.output
    (run_dir,) = (tmp_path / "out").iterdir()
    lines = (run_dir / "records.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "records.jsonl").write_text("".join(lines[:1]))  # as if stopped after one
    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "-q",
                                        "--format", "csv"])
    assert resumed.exit_code == 0, resumed.output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["resumed"][0]["combinations"] == 3
    records = records_of(run_dir)
    assert len(records) == 4 and records[0] == json.loads(lines[0])
    assert {tuple(r["settings"].values()) for r in records} == {(8, 0.5), (8, 1.0), (16, 0.5),
                                                                (16, 1.0)}
    drop = ["tokens_per_sec_mean", *TIMED]  # the measured columns that depend on timing
    table = [pd.read_csv(io.StringIO(r.stdout)).drop(columns=drop) for r in (full, resumed)]
    assert table[0].equals(table[1])


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_resume_refuses_a_run_another_process_is_writing(small_task: Path,
                                                         tmp_path: Path) -> None:
    plan = make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task))
    store = RunStore.create(tmp_path, manifest_for(plan))
    with store.lock():
        result = CliRunner().invoke(main, ["run", "--resume", str(store.path)])
    assert result.exit_code == 2 and "another harness process" in result.output

    class Recording(SerialExecutor):  # as a Ray executor, whose check starts a local Ray
        checked = False

        def check(self, job) -> None:
            Recording.checked = True

    with store.lock(), pytest.raises(ConfigError, match="another harness process"):
        resume(store.path, executor=Recording())
    assert not Recording.checked  # refused before anything was started for it


def test_the_plan_comes_back_from_the_manifest(small_task: Path, small_corpus: Path) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["scratch", "nnrnn"], ["random"], [3, 1], str(small_task),
                     {"epochs": 7}, grid={"lr": ["0.5", "2"], "layers": ["1"]})
    manifest = round_trip(manifest_for(plan, save_checkpoints=True))
    again, checkpoints = load_plan(manifest, registry, where=Path("run"))
    assert again.combinations == plan.combinations and again.recipe == plan.recipe
    assert again.grid == plan.grid == {"lr": (0.5, 2.0), "num_layers": (1,)}
    assert checkpoints is True
    small_corpus.write_text(small_corpus.read_text() + " more", encoding="utf-8")
    with pytest.raises(ConfigError, match="was trained on sha1"):
        load_plan(manifest, registry, where=Path("run"))


def test_a_manifest_whose_plan_names_no_task_is_refused(small_task: Path) -> None:
    # The manifest's schema lets null stand for a key left out; the plan needs the task.
    registry = load_registry()
    stored = manifest_for(make_plan(registry, ["scratch"], ["random"], [0], str(small_task)))
    data = stored.to_json()
    manifest = Manifest.from_json({**data, "plan": {**data["plan"], "task": None}})
    with pytest.raises(ConfigError, match=r"^run: the manifest holds no resumable plan "
                                          r"\(TypeError: plan.task is None, not a task name"):
        load_plan(manifest, registry, where=Path("run"))


def test_a_corpus_given_by_a_relative_path_is_found_from_another_directory(
        small_task: Path, small_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    # A task without a path of its own: only --corpus, as given, reached the manifest.
    task = tmp_path / "bare.toml"
    task.write_text(small_task.read_text().replace('path = "small.txt"', 'url = '
                                                   '"https://example.invalid/small.txt"'))
    registry = load_registry()
    monkeypatch.chdir(tmp_path)
    plan = make_plan(registry, ["scratch"], ["random"], [0], str(task), corpus=Path("small.txt"))
    manifest = round_trip(manifest_for(plan))
    assert manifest.settings.corpus["path"] == "small.txt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(CorpusError, match=r"corpus small.txt is not there.*HARNESS_CORPUS"):
        load_plan(manifest, registry, where=Path("run"))
    monkeypatch.setenv("HARNESS_CORPUS", str(small_corpus))
    again, _ = load_plan(manifest, registry, where=Path("run"))
    assert again.dataset.train == plan.dataset.train
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text() + " more", encoding="utf-8")
    monkeypatch.setenv("HARNESS_CORPUS", str(other))
    with pytest.raises(ConfigError, match="was trained on sha1"):
        load_plan(manifest, registry, where=Path("run"))


@pytest.mark.parametrize("edit, changed", [
    (("num_preds = 10", "num_preds = 12"), "num_preds 10 then, 12 now"),
    (('prefixes = ["the time"]', 'prefixes = ["the"]'), "prefixes ['the time'] then"),
    (("max_tokens = 1500", "max_tokens = 1400"), None),  # the run's recipe is stored
])
def test_resume_refuses_a_task_file_changed_since_the_run(
        edit: tuple[str, str], changed: str | None, small_task: Path) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["scratch"], ["random"], [0], str(small_task))
    manifest = round_trip(manifest_for(plan))
    small_task.write_text(small_task.read_text().replace(*edit))
    if changed is None:
        again, _ = load_plan(manifest, registry, where=Path("run"))
        assert again.dataset.train == plan.dataset.train
        return
    with pytest.raises(ConfigError, match="has changed since the run") as error:
        load_plan(manifest, registry, where=Path("run"))
    assert changed in str(error.value)


def test_remaining_is_what_has_no_record_or_failed_when_asked(small_task: Path) -> None:
    plan = make_plan(load_registry(), ["scratch"], ["sequential", "random"], [0, 1],
                     str(small_task))
    a, b, c, d = plan.combinations
    records = [base_record(a), base_record(b, status="crashed"),
               base_record(c, status="diverged")]
    assert remaining(plan, records) == [d]
    assert remaining(plan, records, retry_failed=True) == [b, d]


def test_retry_failed_needs_resume() -> None:
    result = CliRunner().invoke(main, ["run", "--retry-failed"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_a_moved_corpus_of_a_task_with_its_own_path_is_taken_from_harness_corpus(
        small_task: Path, small_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["scratch"], ["random"], [0], str(small_task))
    manifest = round_trip(manifest_for(plan))
    copy = tmp_path / "copy.txt"
    copy.write_bytes(small_corpus.read_bytes())
    small_corpus.unlink()  # the task's own path and the run's are gone
    with pytest.raises(CorpusError, match="HARNESS_CORPUS"):
        load_plan(manifest, registry, where=Path("run"))
    monkeypatch.setenv("HARNESS_CORPUS", str(copy))
    again, _ = load_plan(manifest, registry, where=Path("run"))
    assert again.dataset.path == copy and again.dataset.train == plan.dataset.train


def test_a_combination_run_again_is_read_back_from_its_new_record(small_task: Path,
                                                                   tmp_path: Path) -> None:
    """--retry-failed appends a second record of the combination it runs again; the store
    must read the run as the new one left it (the last record of a key wins)."""
    from harness.results.schema import Record

    first = run(models=["scratch"], samplers=["sequential", "random"], epochs=1,
                task=str(small_task), output_dir=tmp_path / "out", quiet=True)
    run_dir = first.path
    lines = (run_dir / "records.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 2
    trained = Record.from_json(json.loads(lines[0]))
    failed = trained.with_changes(status="failed", metrics={}, error="RuntimeError: boom")
    (run_dir / "records.jsonl").write_text(json.dumps(failed.to_json()) + "\n" + lines[1])
    assert {r.key: r.status for r in RunStore(run_dir).records()}[trained.key] == "failed"

    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--retry-failed",
                                        "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert len(records_of(run_dir)) == 3  # the failed record stays; the new one follows
    records = {r.key: r for r in RunStore(run_dir).records()}
    assert len(records) == 2
    again = records[trained.key]
    assert again.status == "ok" and again.error is None
    assert again.metric("train_ppl") == trained.metric("train_ppl")
    table = load_run(run_dir).set_index("sampler")
    assert set(table["status"]) == {"ok"}
    assert table.loc[trained.sampler, "train_ppl"] == trained.metric("train_ppl")
