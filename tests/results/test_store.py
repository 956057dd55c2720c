import json
import math
import warnings
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan.gate import check_writable
from harness.results.schema import Manifest, Record, RunSettings
from harness.results.report import write_report
from harness.results.store import RunStore, finite, to_json, write_atomic


def make(tmp_path: Path) -> RunStore:
    manifest = Manifest(run_id="", status="running", settings=RunSettings.from_json({}))
    return RunStore.create(tmp_path / "results", manifest, label="t/../x")


def rec(key: str, **fields: object) -> Record:
    return Record.from_json({"key": key, "model": "m", "sampler": "s", "seed": 0, **fields})


def test_runs_get_distinct_directories_inside_the_root(tmp_path: Path) -> None:
    a, b = make(tmp_path), make(tmp_path)
    assert a.path != b.path
    for store in (a, b):
        assert store.path.parent == tmp_path / "results"
        assert store.manifest().run_id == store.path.name


def test_records_are_appended_with_curves_and_tracebacks(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.append_record(rec("m__s__seed0", status="ok", train_ppl=1.5),
                        [{"epoch": 1, "train_ppl": 2.0, "valid_ppl": None}])
    store.append_record(rec("../evil", status="failed"), traceback="Traceback ...")
    assert [r.key for r in store.records()] == ["m__s__seed0", "../evil"]
    assert store.curve("m__s__seed0") == [{"epoch": 1, "train_ppl": 2.0, "valid_ppl": None}]
    assert (store.path / "errors" / "evil.txt").read_text() == "Traceback ..."
    assert not (tmp_path / "results" / "evil.txt").exists()


def test_non_finite_numbers_are_stored_as_null(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.append_record(rec("k", train_ppl=math.nan, x=[math.inf]))
    line = (store.path / "records.jsonl").read_text().strip()
    stored = json.loads(line)
    assert stored["train_ppl"] is None and stored["x"] == [None]
    assert "NaN" not in line and "Infinity" not in line
    assert finite({"a": (1.0, -math.inf)}) == {"a": [1.0, None]}
    assert to_json(math.nan) == "null"


def test_a_torn_record_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.append_record(rec("a", status="ok"))
    with open(store.path / "records.jsonl", "a") as handle:
        handle.write('{"key": "b", "sta')  # killed mid-write
    with pytest.warns(UserWarning, match="torn"):
        assert [r.key for r in store.records()] == ["a"]


def test_a_record_line_nested_too_deeply_is_skipped_like_a_torn_one(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.append_record(rec("a", status="ok"))
    with open(store.path / "records.jsonl", "a") as handle:
        handle.write("[" * 100_000 + "]" * 100_000 + "\n")
    store.append_record(rec("b", status="ok"))
    with pytest.warns(UserWarning):
        assert [r.key for r in store.records()] == ["a", "b"]


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unwritable_output_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="not writable"):
        check_writable(blocker / "results")


def test_open_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        RunStore.open(tmp_path)


def test_derived_files_replace_the_folder_and_stay_inside_the_run(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.write_files("plots", {"a.png": b"\x89PNG one", "b.png": b"two"})
    store.write_files("plots", {"a.png": b"\x89PNG three", "../c.png": b"four"})
    assert sorted(p.name for p in (store.path / "plots").iterdir()) == ["a.png", "c.png"]
    assert (store.path / "plots" / "a.png").read_bytes() == b"\x89PNG three"
    assert not (store.path / "c.png").exists()


def test_a_record_after_a_torn_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.append_record(rec("a", status="ok"))
    with open(store.path / "records.jsonl", "ab") as handle:
        handle.write('{"key": "b", "model": "\u00e9'.encode()[:-1])  # torn inside a character
    store.append_record(rec("c", status="ok"))
    with pytest.warns(UserWarning, match="records.jsonl:2: skipping a torn"):
        assert [r.key for r in store.records()] == ["a", "c"]


def test_only_one_process_writes_a_run_at_a_time(tmp_path: Path) -> None:
    store = make(tmp_path)
    with store.lock():
        with pytest.raises(ConfigError, match="another harness process"):
            with RunStore.open(store.path).lock():
                pass
    with store.lock():  # released when the holder is done
        pass


def test_binary_files_are_written_atomically_too(tmp_path: Path) -> None:
    write_atomic(tmp_path / "w.pt", b"\x00\xff")
    assert (tmp_path / "w.pt").read_bytes() == b"\x00\xff"


def test_records_keep_text_with_unicode_line_separators(tmp_path: Path) -> None:
    store = make(tmp_path)
    error = "line\u2028para\u2029nel\x85ff\x0cgs\x1d end"
    store.append_record(rec("a", status="failed", error=error))
    store.append_record(rec("b", status="ok"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be taken for a torn line
        records = store.records()
    assert [(r.key, r.error) for r in records] == [("a", error), ("b", None)]


# A run directory never makes the harness write or delete outside it ---------------------
@pytest.mark.parametrize("name", ["plots", "curves", "errors", "checkpoints"])
def test_a_linked_folder_in_a_run_is_refused_not_followed(tmp_path: Path, name: str) -> None:
    from harness.results.checkpoints import save_checkpoint

    store = make(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.png").write_bytes(b"mine")
    (store.path / name).symlink_to(elsewhere, target_is_directory=True)
    writes = {
        "plots": lambda: store.write_files("plots", {"a.png": b"x"}),
        "curves": lambda: store.append_record(rec("k"), [{"epoch": 1, "train_ppl": 2.0}]),
        "errors": lambda: store.append_record(rec("k", status="failed"), traceback="boom"),
        "checkpoints": lambda: save_checkpoint(store, "k", b"weights"),
    }
    with pytest.raises(ConfigError, match=f"{store.path / name} is a symbolic link") as error:
        writes[name]()
    assert "\n" not in str(error.value)
    assert [p.name for p in elsewhere.iterdir()] == ["keep.png"]  # nothing written or removed
    assert (elsewhere / "keep.png").read_bytes() == b"mine"
    assert (store.path / name).is_symlink()  # the user's link is left alone
    assert not (store.path / "records.jsonl").exists()  # no record points at nothing
    with pytest.raises(ConfigError, match="symbolic link"):
        with store.lock():  # --resume and run refuse it before writing anything
            pass


def test_derived_files_are_not_written_over_links(tmp_path: Path) -> None:
    store = make(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    for name in ("report.md", "records.jsonl", "manifest.json", ".lock"):
        (store.path / name).unlink(missing_ok=True)
        (store.path / name).symlink_to(outside)
    with pytest.raises(ConfigError, match="report.md is a symbolic link"):
        store.write_text("report.md", "# report")
    with pytest.raises(ConfigError, match="records.jsonl is a symbolic link"):
        store.append_record(rec("k"))
    with pytest.raises(ConfigError, match="manifest.json is a symbolic link"):
        store.write_manifest(Manifest(run_id="", status="x", settings=RunSettings.from_json({})))
    with pytest.raises(ConfigError, match="symbolic link"):
        with store.lock():  # filelock would truncate the file .lock points at
            pass
    assert outside.read_text() == "mine"


def test_a_run_directory_reached_through_a_link_is_written(tmp_path: Path) -> None:
    store = make(tmp_path)
    latest = tmp_path / "latest"
    latest.symlink_to(store.path, target_is_directory=True)
    linked = RunStore.open(latest)
    with linked.lock():
        linked.update_manifest(status="complete")
        linked.append_record(rec("k"), [{"epoch": 1, "train_ppl": 2.0}])
        linked.write_files("plots", {"a.png": b"x"})
    assert store.manifest().status == "complete" and [r.key for r in store.records()] == ["k"]


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from harness.results.checkpoints import save_checkpoint

    old = os.umask(0o022)
    try:
        store = make(tmp_path)
        store.append_record(rec("k", status="failed"), [{"epoch": 1, "train_ppl": 2.0}],
                            traceback="boom")
        store.write_text("report.md", "# r")
        store.write_files("plots", {"a.png": b"x"})
        save_checkpoint(store, "k", b"weights")
        os.umask(0o027)
        store.update_manifest(status="complete")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(store.path)): stat.S_IMODE(p.stat().st_mode)
             for p in store.path.rglob("*") if p.is_file() and p.name != ".lock"}
    assert modes == {"manifest.json": 0o640, "records.jsonl": 0o644, "report.md": 0o644,
                     "curves/k.csv": 0o644, "errors/k.txt": 0o644, "plots/a.png": 0o644,
                     "checkpoints/k.pt": 0o644}


def test_taking_the_lock_removes_temporary_files_a_killed_writer_left(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = make(tmp_path)
    (store.path / "checkpoints").mkdir()
    # A writer killed (SIGKILL) between writing its temporary file and renaming it.
    killer = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "import harness.results.store as s\n"
              "s.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              "s.write_atomic(Path(sys.argv[1]), b'weights')\n")
    for target in (store.path / "checkpoints" / "k.pt", store.path / "manifest.json"):
        done = subprocess.run([sys.executable, "-c", killer, str(target)])
        assert done.returncode == -9
    left = sorted(p.name for p in store.path.rglob(".harness-tmp-*"))
    assert sorted(name.split(".", 2)[2] for name in left) == ["k.pt", "manifest.json"]
    mine = store.path / ".k.pt.abc123"  # someone's own hidden file, not ours: kept
    mine.write_text("")
    outside = tmp_path / ".harness-tmp-0123456789ab.x"  # not in the run directory: kept
    outside.write_text("")
    with store.lock():
        assert not list(store.path.rglob(".harness-tmp-*"))
    assert mine.exists() and outside.exists()
    assert store.manifest().run_id == store.path.name  # the old manifest is whole
    assert sorted(p.name for p in (store.path / "checkpoints").iterdir()) == []


def test_a_write_whose_temporary_file_was_taken_for_stale_is_done_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.results.store as module

    replace, calls = module.os.replace, []

    def racing(source: str, target: Path) -> None:
        calls.append(source)
        if len(calls) == 1:
            Path(source).unlink()  # a process taking the lock removed it meanwhile
        replace(source, target)

    monkeypatch.setattr(module.os, "replace", racing)
    write_atomic(tmp_path / "r.md", "text")
    assert (tmp_path / "r.md").read_text() == "text" and len(calls) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]


# A corrupt manifest or curve names its file ---------------------------------------------
@pytest.mark.parametrize("content", [
    b"\xff\xfe{}", b"{not json", b"[1, 2]", b'"text"',
    b'{"settings": {"seeds": "x"}}', b'{"settings": {"grid": 5}}',
    b'{"settings": {"grid": {"lr": 5}}}', b'{"settings": {"models": [1]}}',
    b'{"settings": {"recipe": [1]}}', b'{"settings": {"corpus": "c"}}',
    b'{"settings": {"task": 5}}', b'{"settings": 5}', b'{"environment": []}',
    b'{"plan": {"combinations": [5]}}', b'{"plan": {"combinations": [{"sampler": 5}]}}',
    b'{"plan": {"combinations": [{"model": "m", "sampler": "s", "seed": 0, "settings": 5}]}}',
    b'{"plan": {"combinations": [{"model": "m", "sampler": "s", "seed": 0, '
    b'"settings": {"lr": [1]}}]}}',
    b'{"plan": {"combinations": [{"model": "m", "sampler": "s", "seed": "0"}]}}',
    b'{"plan": {"task_settings": 5}}', b'{"resumed": 5}', b'{"status": 5}',
    b"[" * 100_000 + b"]" * 100_000,  # deeper than Python's stack: a RecursionError
])
def test_a_corrupt_manifest_is_a_one_line_error_naming_the_file(tmp_path: Path,
                                                                 content: bytes) -> None:
    store = make(tmp_path)
    (store.path / "manifest.json").write_bytes(content)
    with pytest.raises(ConfigError) as error:
        store.manifest()
    message = str(error.value)
    assert message.startswith(f"{store.path / 'manifest.json'}: not a harness manifest")
    assert "\n" not in message


@pytest.mark.parametrize("content,why", [
    (b"epoch,train_ppl\n1,abc\n", "could not convert"),
    (b"epoch,train_ppl\n1,\xff\xfe\n", "can't decode"),
    (b"train_ppl\n2.0\n", "epoch column"),
    (b"abc", "no rows"),
    (b"epoch,train_ppl\n", "no rows"),
    (b"epoch,train_ppl\n1.5,2.0\n", "epoch column"),
    (b"epoch,train_ppl\n2,2.0\n1,3.0\n", "do not increase"),
    (b"epoch,train_ppl\n1,2.0,7\n", "more cells"),
    (b"epoch,train_ppl\n1," + b"1" * 400 + b"\n", "integer too large for a float"),
    (b"epoch,train_ppl\n" + b"9" * 400 + b",2.0\n", "integer too large for a float"),
])
def test_a_corrupt_curve_is_an_error_naming_the_file(tmp_path: Path, content: bytes,
                                                      why: str) -> None:
    store = make(tmp_path)
    (store.path / "curves").mkdir()
    (store.path / "curves" / "k.csv").write_bytes(content)
    with pytest.raises(ConfigError, match=why) as error:
        store.curve("k")
    assert str(error.value).startswith(f"{store.path / 'curves' / 'k.csv'}: not a curve")


@pytest.mark.parametrize("line", [
    "[1, 2]", '"text"', "5", '{"key": 5, "model": "m", "sampler": "s", "seed": 0}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": "0"}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "settings": 5}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "generated": [1]}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "generated": {"the": 5}}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "status": [5]}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "wall_seconds": "x"}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "num_params": 1.5}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "settings": {"lr": [1]}}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "error": {"x": 1}}',
    '{"key": "b", "model": "m", "sampler": "s", "seed": 0, "train_ppl": 1%s}' % ("0" * 309),
])
def test_a_wrong_shaped_record_line_is_skipped_with_a_warning(tmp_path: Path,
                                                              line: str) -> None:
    store = make(tmp_path)
    store.append_record(rec("a", status="ok"))
    with open(store.path / "records.jsonl", "a") as handle:
        handle.write(line + "\n")
    with pytest.warns(UserWarning, match="records.jsonl:2: skipping"):
        assert [r.key for r in store.records()] == ["a"]
    store.append_record(rec("c", status="ok", settings={"flag": True, "lr": 0.5}))
    with pytest.warns(UserWarning, match="records.jsonl:2: skipping"):
        assert [r.key for r in store.records()] == ["a", "c"]
    with pytest.warns(UserWarning, match="records.jsonl:2: skipping"):
        report = write_report(store).read_text()  # the report leaves the line out too
    per_seed = report.split("### Per seed")[1].split("\n## ")[0]
    assert len([row for row in per_seed.splitlines() if row.startswith("| m ")]) == 2
