import json
from pathlib import Path

import pytest

from harness.data.taskfile import builtin_task_names, load_task, run_references
from harness.errors import ConfigError

CORPUS = "[corpus]\npath = 'a'\n"
TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


def test_timemachine_task_is_d2ls() -> None:
    task = load_task("timemachine")
    assert "timemachine" in builtin_task_names()
    assert task.source.sha1 == TIMEMACHINE_SHA1
    assert task.source.url.endswith("/timemachine.txt")
    assert task.recipe["max_tokens"] == 10_000 and task.recipe["num_hiddens"] == 512
    assert task.prefixes == ("time traveller", "traveller") and task.num_preds == 50
    assert task.default_models == ("scratch", "nnrnn")
    assert task.default_samplers == ("sequential", "random", "sequential-reset")
    assert len(task.references) == 8 and task.origin == "timemachine"


def test_task_file_with_relative_corpus(small_task: Path) -> None:
    task = load_task(str(small_task))
    assert task.name == "small" and task.recipe["batch_size"] == 4
    assert task.source.path == small_task.parent / "small.txt"


def test_the_recipe_table_is_kept_as_written(tmp_path: Path) -> None:
    # Names and ranges are the plan's to check (harness.plan.fits): here only the types.
    path = tmp_path / "t.toml"
    path.write_text("name = 'x'\n" + CORPUS + "[recipe]\nepoch = 3\nlr = -1.0\n")
    assert load_task(str(path)).recipe == {"epoch": 3, "lr": -1.0}


@pytest.mark.parametrize("text,match", [
    ("name = 'x'\n", r"bad.toml: \[corpus\] is missing"),
    ("name = 'x'\n[corpus]\nsha1 = 'a'\n", "url or a path"),
    ("name = 'x'\ntokenizer = 'byte'\n[corpus]\npath = 'a'\n", "tokenizer"),
    ("not toml [", "invalid task file"),
    # Wrong types and unknown keys: each one line naming the key, never a traceback.
    ("name = 'x'\ncorpus = 'tm.txt'\n", r"\[corpus\] must be a table, got 'tm.txt'"),
    ("name = 'x'\n[corpus]\nurl = 5\n", r"\[corpus\] url must be a non-empty string"),
    ("name = 'x'\n[corpus]\npath = 'a'\nsha1 = 'abc'\n", r"sha1 must be 40 hexadecimal"),
    ("name = 'x'\n[corpus]\npath = 'a'\nfile = 'b'\n", r"unknown key\(s\) \[corpus\] file"),
    ("name = 3\n" + CORPUS, "name must be a non-empty string, got 3"),
    ("name = 'x'\ntokenizer = ['char']\n" + CORPUS, "tokenizer must be a non-empty string"),
    ("name = 'x'\ntokenizr = 'char'\n" + CORPUS, r"unknown key\(s\) tokenizr"),
    # [recipe]: a table of strings, numbers and booleans
    ("name = 'x'\nrecipe = 3\n" + CORPUS, r"\[recipe\] must be a table, got 3"),
    ("name = 'x'\n" + CORPUS + "[recipe]\nlr = [1.0]\n",
     r"\[recipe\] lr must be a string, number or boolean, got \[1.0\]"),
    ("name = 'x'\n" + CORPUS + "[recipe.lr]\nvalue = 1\n", r"\[recipe\] lr must be a string"),
    # [generate]: found at load, not after training
    ("name = 'x'\ngenerate = 'abc'\n" + CORPUS, r"\[generate\] must be a table"),
    ("name = 'x'\n" + CORPUS + "[generate]\nprefixes = ['']\n", "no char token"),
    ("name = 'x'\ntokenizer = 'word'\n" + CORPUS + "[generate]\nprefixes = [' ']\n",
     "no word token"),
    ("name = 'x'\n" + CORPUS + "[generate]\nprefixes = [1, 2]\n", "must be a list of strings"),
    ("name = 'x'\n" + CORPUS + "[generate]\nprefixes = 'abc'\n", "must be a list of strings"),
    ("name = 'x'\n" + CORPUS + "[generate]\nnum_preds = -5\n", "num_preds must be a positive"),
    ("name = 'x'\n" + CORPUS + "[generate]\nnum_preds = 2.7\n", "num_preds must be a positive"),
    ("name = 'x'\n" + CORPUS + "[generate]\nnum_preds = true\n", "num_preds must be a positive"),
    ("name = 'x'\n" + CORPUS + "[generate]\nnum_pred = 5\n", r"unknown key\(s\) \[generate\]"),
    # [defaults]
    ("name = 'x'\ndefaults = ['scratch']\n" + CORPUS, r"\[defaults\] must be a table"),
    ("name = 'x'\n" + CORPUS + "[defaults]\nmodels = 'scratch'\n",
     r"\[defaults\] models must be a list of non-empty strings, got 'scratch'"),
    ("name = 'x'\n" + CORPUS + "[defaults]\nsamplers = ['random', '']\n",
     r"\[defaults\] samplers must be a list of non-empty strings"),
    ("name = 'x'\n" + CORPUS + "[defaults]\nmodel = ['scratch']\n",
     r"unknown key\(s\) \[defaults\] model; choose from: models, samplers"),
])
def test_bad_task_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as caught:
        load_task(str(path))
    assert str(caught.value).startswith(f"task {path}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["a\nb", "\r", "\u2028", " "])
def test_an_unknown_key_that_would_break_or_hide_the_line_is_named_by_its_repr(
        tmp_path: Path, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n" + CORPUS + f"{json.dumps(key)} = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \[corpus\] ") as caught:
        load_task(str(path))
    assert f"[corpus] {key!r}; choose from" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_unknown_task_lists_choices() -> None:
    with pytest.raises(ConfigError, match="choose from: .*timemachine"):
        load_task("nosuchtask")


def test_a_task_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid UTF-8"):
        load_task(str(path))


def test_generate_table_is_read_as_given(small_task: Path) -> None:
    task = load_task(str(small_task))
    assert task.prefixes == ("the time",) and task.num_preds == 10


def test_a_task_without_prefixes_generates_no_text(small_task: Path) -> None:
    text = small_task.read_text()
    small_task.write_text(text[:text.index("[generate]")])
    assert load_task(str(small_task)).prefixes == ()


def test_defaults_name_the_models_and_samplers_a_run_trains_unless_told(
        tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("name = 'x'\n" + CORPUS)
    bare = load_task(str(path))
    assert bare.default_models == bare.default_samplers == ()  # the CLI then needs --models
    path.write_text("name = 'x'\n" + CORPUS + '[defaults]\nmodels = ["gru", "lstm"]\n'
                    'samplers = ["random"]\n')
    task = load_task(str(path))
    assert task.default_models == ("gru", "lstm") and task.default_samplers == ("random",)


def test_a_run_recorded_without_references_falls_back_to_the_shipped_task() -> None:
    shipped = load_task("timemachine").reference_set
    assert run_references(None, "timemachine", TIMEMACHINE_SHA1) == shipped
    # Another corpus, or a task that is not shipped: nothing to fall back on.
    assert run_references(None, "timemachine", "0" * 40).entries == ()
    assert run_references(None, "mytext", TIMEMACHINE_SHA1).entries == ()
    # A manifest that stores references is read as it is, even an empty set.
    stored = {"task": "timemachine", "corpus_sha1": TIMEMACHINE_SHA1, "recipe": {},
              "entries": []}
    assert run_references(stored, "timemachine", TIMEMACHINE_SHA1).entries == ()
    assert run_references(shipped.to_json(), "timemachine", TIMEMACHINE_SHA1) == shipped
    with pytest.raises(ValueError, match="entries must be a list"):
        run_references({**stored, "entries": 3}, "timemachine", TIMEMACHINE_SHA1)
