import json
import math
import warnings
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan.gate import check_writable
from harness.results.schema import Manifest, Record, RunSettings
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
