"""Fuzzing the run-directory files the harness reads back: ``manifest.json``,
``records.jsonl``, ``curves/*.csv`` and ``checkpoints/vocab.json`` of a real finished run,
corrupted (bytes, JSON values, CSV cells), then read by ``harness report``, ``harness
compare``, ``harness run --resume`` and ``harness generate``. Each command succeeds or exits
2 with one ``Error:`` line, never a traceback.

Every input works on a fresh copy of the session's finished run (conftest's
``finished_run``), so a corruption, or a resume that writes, never leaks into the next.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fuzzkit
from fuzzkit import cli_outcome, corrupt_file, examples, json_text, mutated_json, printable, tried
from harness.cli import main

# the harness warns when it skips a corrupt record line or curve: expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:harness")

CURVE = "curves/scratch__sequential__seed0.csv"
FILES = ["manifest.json", "records.jsonl", CURVE, "checkpoints/vocab.json"]


@contextmanager
def copy_of(run: Path) -> Iterator[Path]:
    """A throw-away copy of ``run`` (same folder name: the run id)."""
    folder = Path(tempfile.mkdtemp(dir=run.parent.parent, prefix="case-"))
    try:
        copy = folder / run.name
        shutil.copytree(run, copy)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# corruptions, each aware of its file's format


@st.composite
def record_lines(draw: st.DrawFn, original: bytes) -> bytes:
    """records.jsonl with one line's JSON changed, a line added or dropped, or raw damage."""
    lines = original.decode("utf-8").splitlines()
    kind = draw(st.sampled_from(["line", "line", "line", "add", "drop", "duplicate"]))
    index = draw(st.integers(0, len(lines) - 1))
    if kind == "line":
        lines[index] = draw(mutated_json(json.loads(lines[index])))
    elif kind == "add":
        lines.insert(draw(st.integers(0, len(lines))),
                     draw(st.one_of(json_text(), st.text(printable, max_size=30))))
    elif kind == "drop":
        del lines[index]
    else:
        lines.append(lines[index])
    return ("\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))).encode()


csv_cells = st.one_of(
    st.sampled_from(["", "nan", "inf", "-inf", "-1", "0", "1e309", "1" * 400, "x", "1.5",
                     "None", "True", " 2", "2 ", "\u0661", "1_0", "0x1"]),
    st.integers().map(str), st.floats().map(repr), st.text(printable, max_size=8),
)


@st.composite
def curve_table(draw: st.DrawFn, original: bytes) -> bytes:
    """A curve CSV with a cell changed, a column dropped or renamed, rows added or removed."""
    rows = list(csv.reader(io.StringIO(original.decode("utf-8"))))
    kind = draw(st.sampled_from(["cell", "cell", "cell", "column", "rename", "row", "header"]))
    if kind == "cell":
        row = draw(st.integers(1, len(rows) - 1))
        rows[row][draw(st.integers(0, len(rows[row]) - 1))] = draw(csv_cells)
    elif kind == "column":
        column = draw(st.integers(0, len(rows[0]) - 1))
        rows = [r[:column] + r[column + 1:] for r in rows]
    elif kind == "rename":
        rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(
            st.sampled_from(["epoch", "train_ppl", "valid_ppl", "", "x"]))
    elif kind == "row":
        rows.append(draw(st.lists(csv_cells, max_size=len(rows[0]) + 1)))
    else:
        rows = rows[:1]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


@st.composite
def corruptions(draw: st.DrawFn, run: Path, files: list[str] = FILES) -> tuple[str, bytes | None]:
    """One file of ``run`` (relative path) and its new contents (None: deleted)."""
    name = draw(st.sampled_from(files))
    original = (run / name).read_bytes()
    structured = {"records.jsonl": record_lines, CURVE: curve_table}.get(name)
    if structured is not None and draw(st.integers(0, 2)):
        return name, draw(structured(original))
    return name, corrupt_file(draw, original, is_json=name.endswith(".json"))


def corrupt(run: Path, name: str, contents: bytes | None) -> None:
    if contents is None:
        (run / name).unlink()
    else:
        (run / name).write_bytes(contents)


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def big_model(run: Path) -> bool:
    """Whether a corrupted record asks generate to build a model too large to be cheap."""
    try:
        lines = (run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    for line in lines:
        try:
            settings_ = json.loads(line).get("model_settings") or {}
            sizes = [settings_.get(k) for k in ("num_hiddens", "num_layers")]
        except (ValueError, AttributeError):
            continue
        if any(isinstance(v, (int, float)) and v > 512 for v in sizes):
            return True
    return False


# ---------------------------------------------------------------------------------------
# bugs found and fixed: their minimal inputs, each now reported or refused with one line


def refusal(result: Any) -> str:
    """The one ``Error:`` line of a command that exited 2 (fails on anything else)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    line = cli_outcome(result, "a fixed bug's input")
    assert line is not None
    return line


def test_a_curve_value_beyond_float_range_is_reported_or_one_line(finished_run: Path) -> None:
    """curve-huge-int: a curve holding a value too large for a float is skipped as one that
    cannot be read, and the report says so."""
    with copy_of(finished_run) as run:
        (run / CURVE).write_text(f"epoch,train_ppl\n1,{10**309}\n", encoding="utf-8")
        result = invoke("report", run, "-q")
        assert result.exit_code == 0 and result.exception is None, result.output
        assert "a cell holds an integer too large for a float" in \
            (run / "report.md").read_text(encoding="utf-8")


def cite(run: Path, entries: list[dict]) -> None:
    """Make ``run``'s manifest cite ``entries``, as a task file's [[reference]] would, for
    the run's own task, corpus and recipe (so that they apply to its group); of the recipe,
    the values a task's [recipe] table can hold (strings, numbers and booleans)."""
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    settings_ = manifest["settings"]
    recipe = {k: v for k, v in settings_["recipe"].items()
              if isinstance(v, (str, int, float, bool))}
    manifest["references"] = {"task": settings_["task"],
                              "corpus_sha1": settings_["corpus"]["sha1"],
                              "recipe": recipe, "entries": entries}
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_a_reference_with_huge_digits_is_reported_or_one_line(finished_run: Path) -> None:
    """reference-digits-huge: the report says the references cannot be read."""
    with copy_of(finished_run) as run:
        cite(run, [{"model": "scratch", "sampler": "sequential", "metric": "train_ppl",
                    "low": 0.0, "high": 0.0, "source": "d2l", "digits": 2**31}])
        result = invoke("report", run, "-q")
        assert result.exit_code == 0 and result.exception is None, result.output
        assert "digits must be an integer >= 0 and at most 20, got 2147483648" in \
            (run / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("change", [{"tokenizer": "bpe"}, {"separator": 5},
                                    {"separator": None}],
                         ids=["tokenizer", "separator", "separator-null"])
def test_a_vocabulary_with_a_bad_tokenizer_or_separator_is_one_line(change: dict,
                                                                    finished_run: Path) -> None:
    """vocab-fields-unchecked: generate refuses the vocabulary."""
    with copy_of(finished_run) as run:
        path = run / "checkpoints/vocab.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
        result = invoke("generate", run, "-m", "scratch", "--seed", "0", "-p", "the", "-n", "3")
        assert "vocab.json: not a vocabulary written by harness" in refusal(result)


@pytest.mark.parametrize("model_settings", [None, {"num_hiddens": "x", "num_layers": 1},
                                            {"num_hiddens": -1}, {"num_hiddens": 8, "x": 1}],
                         ids=["missing", "num_hiddens-text", "num_hiddens-negative",
                              "unknown-key"])
def test_generate_from_a_record_with_bad_model_settings_is_one_line(
        model_settings: dict | None, finished_run: Path) -> None:
    """record-model-settings-unchecked: generate refuses the record's model settings."""
    with copy_of(finished_run) as run:
        path = run / "records.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        record = json.loads(lines[0])  # seed 0
        record.pop("model_settings")
        if model_settings is not None:
            record["model_settings"] = model_settings
        lines[0] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = invoke("generate", run, "-m", "scratch", "--seed", "0", "-p", "the", "-n", "3")
        assert "has model_settings the harness does not write" in refusal(result)


def test_resume_of_a_manifest_whose_plan_task_is_null_is_one_line(finished_run: Path) -> None:
    """manifest-plan-unchecked: resume refuses a null plan.task (the manifest's schema
    lets null stand for a key left out; a number is refused there)."""
    with copy_of(finished_run) as run:
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        manifest["plan"]["task"] = None
        (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        line = refusal(invoke("run", "--resume", run, "-q"))
        assert "the manifest holds no resumable plan (TypeError: plan.task is None" in line


@pytest.mark.parametrize("command", ["report", "compare", "resume"])
def test_a_record_metric_beyond_float_range_is_skipped_or_one_line(command: str,
                                                                   finished_run: Path) -> None:
    """record-huge-int: the line is skipped as a corrupt one (a resume runs it again)."""
    with copy_of(finished_run) as run:
        path = run / "records.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "train_ppl": 10**309})
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = {"report": ["report", run, "-q"], "compare": ["compare", finished_run, run],
                "resume": ["run", "--resume", run, "-q"]}[command]
        with pytest.warns(UserWarning, match="skipping a torn or corrupt record line"):
            result = invoke(*args)
        assert result.exit_code == 0 and result.exception is None, result.output


# ---------------------------------------------------------------------------------------
# the commands


@settings(max_examples=examples(30))
@given(data=st.data())
def test_report_of_a_corrupted_run(data: st.DataObject, finished_run: Path) -> None:
    tried("run dir: report")
    with copy_of(finished_run) as run:
        name, contents = data.draw(corruptions(run), label="corruption")
        corrupt(run, name, contents)
        cli_outcome(invoke("report", run, "-q"), f"run dir: report ({name})")


@settings(max_examples=examples(60))
@given(data=st.data(), corrupted_first=st.booleans())
def test_compare_with_a_corrupted_run(data: st.DataObject, corrupted_first: bool,
                                      finished_run: Path) -> None:
    tried("run dir: compare")
    with copy_of(finished_run) as run:
        name, contents = data.draw(corruptions(run, FILES[:2]), label="corruption")
        corrupt(run, name, contents)
        pair = (run, finished_run) if corrupted_first else (finished_run, run)
        cli_outcome(invoke("compare", *pair, "--force"), f"run dir: compare ({name})")
        cli_outcome(invoke("compare", *pair), f"run dir: compare ({name})")


@settings(max_examples=examples(30))
@given(data=st.data(), retry_failed=st.booleans())
def test_resume_of_a_corrupted_run(data: st.DataObject, retry_failed: bool,
                                   finished_run: Path) -> None:
    tried("run dir: resume")
    with copy_of(finished_run) as run:
        name, contents = data.draw(corruptions(run), label="corruption")
        corrupt(run, name, contents)
        args = ["run", "--resume", run, "-q", *(["--retry-failed"] if retry_failed else [])]
        cli_outcome(invoke(*args), f"run dir: resume ({name})", ok_codes=(0, 3))


@st.composite
def manifest_with_one_value_changed(draw: st.DrawFn, original: dict) -> str:
    """The manifest with one value of what a resume rebuilds the plan from (``settings``,
    ``plan``) or of its status replaced by any JSON value, or removed."""
    paths = [p for p in fuzzkit.json_paths(original)
             if p and p[0] in ("settings", "plan", "status", "references")]
    path = draw(st.sampled_from(paths))
    if draw(st.integers(0, 4)) == 0:
        return json.dumps(fuzzkit.json_delete(original, path))
    new = draw(st.one_of(fuzzkit.scalars, fuzzkit.json_values, st.sampled_from(
        ["scratch", "nnrnn", "sequential", "random", 0, 1, 2, -1, 2**63, "cpu", "cuda",
         "meta", "", ".", "/", "small.txt", "/dev/null"])))
    if path[-1] in ("epochs", "num_hiddens", "num_layers", "max_tokens") \
            and isinstance(new, int) and new > 64:
        new = 64  # a resume that trains must stay cheap
    return json.dumps(fuzzkit.json_replace(original, path, new))


@settings(max_examples=examples(30))
@given(data=st.data())
def test_resume_of_a_run_with_one_manifest_value_changed(data: st.DataObject,
                                                         finished_run: Path) -> None:
    tried("run dir: resume (manifest value)")
    with copy_of(finished_run) as run:
        original = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        text = data.draw(manifest_with_one_value_changed(original), label="manifest")
        (run / "manifest.json").write_text(text, encoding="utf-8")
        cli_outcome(invoke("run", "--resume", run, "-q"), "run dir: resume (manifest value)",
                    ok_codes=(0, 3))


@settings(max_examples=examples(40))
@given(data=st.data())
def test_generate_from_a_corrupted_run(data: st.DataObject, finished_run: Path) -> None:
    tried("run dir: generate")
    with copy_of(finished_run) as run:
        name, contents = data.draw(
            corruptions(run, ["checkpoints/vocab.json", "checkpoints/vocab.json",
                              "records.jsonl", "manifest.json"]), label="corruption")
        corrupt(run, name, contents)
        assume(not big_model(run))
        result = invoke("generate", run, "-m", "scratch", "-s", "sequential", "--seed", "0",
                        "-p", "the time", "-n", "5")
        cli_outcome(result, f"run dir: generate ({name})")


@st.composite
def reference_bounds(draw: st.DrawFn) -> dict[str, Any]:
    """``low`` and ``high``: mostly a sound range, sometimes any two numbers."""
    if draw(st.integers(0, 5)):
        low = draw(st.floats(0, 50))
        return {"low": low, "high": low + draw(st.sampled_from([0, 0.5, 30]))}
    return {"low": draw(fuzzkit.numbers), "high": draw(fuzzkit.numbers)}


reference_entries = st.tuples(reference_bounds(), st.fixed_dictionaries({
    "model": fuzzkit.weighted(st.just("scratch"), fuzzkit.names, odds=6),
    "sampler": fuzzkit.weighted(st.just("sequential"), fuzzkit.names, odds=6),
    "metric": st.sampled_from(["train_ppl", "valid_ppl", "tokens_per_sec", "loss", "seed",
                               "model", "train ppl", "wall_seconds", " "]),
    "source": fuzzkit.weighted(st.just("d2l"), fuzzkit.scalars, odds=6),
    "digits": fuzzkit.weighted(st.integers(0, 20) | st.sampled_from([400, 2**31, 2**63]),
                               fuzzkit.scalars, odds=6),
    # rarely: an entry with settings or ignore mostly no longer applies to the run
    "ignore": fuzzkit.weighted(st.none(), st.lists(fuzzkit.fields, max_size=2)
                               | fuzzkit.json_values, odds=4),
    "settings": fuzzkit.weighted(st.none(), st.dictionaries(fuzzkit.fields, fuzzkit.scalars,
                                                            max_size=2), odds=4),
})).map(lambda parts: {k: v for k, v in {**parts[0], **parts[1]}.items() if v is not None})


@settings(max_examples=examples(20))
@given(entries=st.lists(reference_entries, min_size=1, max_size=2))
def test_report_of_a_run_whose_manifest_cites_fuzzed_references(entries: list[dict],
                                                                 finished_run: Path) -> None:
    """The manifest's ``references`` (what the report compares the results with) set to
    entries that apply to the run's one group, their numbers and formats fuzzed."""
    tried("run dir: report (fuzzed references)")
    with copy_of(finished_run) as run:
        cite(run, entries)
        cli_outcome(invoke("report", run, "-q"), "run dir: report (fuzzed references)")


def test_the_pristine_run_reports_compares_resumes_and_generates(finished_run: Path) -> None:
    """The fuzzers' starting point is sound: every command works on the untouched run."""
    with copy_of(finished_run) as run:
        for args in (["report", run, "-q"], ["compare", finished_run, run],
                     ["run", "--resume", run, "-q"],
                     ["generate", run, "-m", "scratch", "--seed", "0", "-p", "the", "-n", "3"]):
            result = invoke(*args)
            assert result.exit_code == 0, (args, result.output)
