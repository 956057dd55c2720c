from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.data.tasks import builtin_task_names, load_task, prepare

CORPUS = "[corpus]\npath = 'a'\n"


def test_timemachine_task_is_d2ls() -> None:
    task = load_task("timemachine")
    assert "timemachine" in builtin_task_names()
    assert task.source.sha1 == "090b5e7e70c295757f55df93cb0a180b9691891a"
    assert task.source.url.endswith("/timemachine.txt")
    assert task.recipe.max_tokens == 10_000 and task.recipe.num_hiddens == 512
    assert task.prefixes == ("time traveller", "traveller") and task.num_preds == 50


def test_timemachine_split(timemachine: Path) -> None:
    task = load_task("timemachine")
    data = prepare(task, task.recipe, timemachine)
    assert len(data.vocab) == 28 and len(data.train) == 10_000 and len(data.valid) == 5_000
    everything = prepare(task, task.recipe.with_overrides(max_tokens=15_000), timemachine)
    assert everything.train[10_000:] == data.valid  # validation follows the training slice


def test_task_file_with_relative_corpus(small_task: Path) -> None:
    task = load_task(str(small_task))
    assert task.name == "small" and task.recipe.batch_size == 4
    data = prepare(task, task.recipe)
    assert len(data.train) == 1500 and len(data.valid) == 300


def test_corpus_too_small_for_one_minibatch(small_task: Path) -> None:
    task = load_task(str(small_task))
    with pytest.raises(ConfigError, match="needs at least"):
        prepare(task, task.recipe.with_overrides(batch_size=400))
    with pytest.raises(ConfigError, match="validation"):
        prepare(task, task.recipe.with_overrides(max_tokens=2800, valid_tokens=300))


def test_validation_too_short_says_which_setting_fixes_it(small_task: Path) -> None:
    task = load_task(str(small_task))  # batch 4 x steps 5: validation needs 21 tokens
    with pytest.raises(ConfigError, match=r"--valid-tokens is 10: raise --valid-tokens to at "
                       r"least 21, lower --batch-size or --steps, or set --valid-tokens 0$"):
        prepare(task, task.recipe.with_overrides(valid_tokens=10))
    # When the corpus ends first, more --valid-tokens cannot help: fewer training tokens can.
    corpus_tokens = len(prepare(task, task.recipe.with_overrides(max_tokens=10**6,
                                                                  valid_tokens=0)).train)
    with pytest.raises(ConfigError, match=rf"only 10 tokens after the {corpus_tokens - 10} "
                       rf"training tokens: lower --max-tokens to at most {corpus_tokens - 21},"):
        prepare(task, task.recipe.with_overrides(max_tokens=corpus_tokens - 10))


@pytest.mark.parametrize("text,match", [
    ("name = 'x'\n", r"bad.toml: \[corpus\] is missing"),
    ("name = 'x'\n[corpus]\nsha1 = 'a'\n", "url or a path"),
    ("name = 'x'\ntokenizer = 'byte'\n[corpus]\npath = 'a'\n", "tokenizer"),
    ("name = 'x'\n[corpus]\npath = 'a'\n[recipe]\nepoch = 3\n", "unknown recipe setting"),
    ("not toml [", "invalid task file"),
    # Wrong types and unknown keys: each one line naming the key, never a traceback.
    ("name = 'x'\ncorpus = 'tm.txt'\n", r"\[corpus\] must be a table, got 'tm.txt'"),
    ("name = 'x'\n[corpus]\nurl = 5\n", r"\[corpus\] url must be a non-empty string"),
    ("name = 'x'\n[corpus]\npath = 'a'\nsha1 = 'abc'\n", r"sha1 must be 40 hexadecimal"),
    ("name = 'x'\n[corpus]\npath = 'a'\nfile = 'b'\n", r"unknown key\(s\) \[corpus\] file"),
    ("name = 3\n" + CORPUS, "name must be a non-empty string, got 3"),
    ("name = 'x'\ntokenizer = ['char']\n" + CORPUS, "tokenizer must be a non-empty string"),
    ("name = 'x'\ntokenizr = 'char'\n" + CORPUS, r"unknown key\(s\) tokenizr"),
    ("name = 'x'\n" + CORPUS + "[recipe]\ndropout = 'x'\n", r"\[recipe\] dropout must be"),
    ("name = 'x'\n" + CORPUS + "[recipe]\nlr = true\n", r"\[recipe\] lr must be a finite"),
    ("name = 'x'\n" + CORPUS + "[recipe]\nclip = true\n", r"\[recipe\] clip must be"),
    ("name = 'x'\n" + CORPUS + "[recipe]\nepochs = 0\n", r"\[recipe\] epochs must be"),
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
])
def test_bad_task_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_task(str(path))


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


def test_prefixes_the_corpus_never_has_are_refused_before_training(small_task: Path) -> None:
    text = small_task.read_text().replace('["the time"]', '["the Time", "the 1"]')
    small_task.write_text(text)
    task = load_task(str(small_task))
    with pytest.raises(ConfigError, match=r"prefix 'the Time' has tokens the corpus never "
                       r"has: 'T' \(preprocessing"):
        prepare(task, task.recipe)


def test_the_default_prefixes_are_not_held_against_another_corpus(small_task: Path) -> None:
    # A task without [generate] samples after d2l's "time traveller"; a corpus without a
    # 'v' must still train (the prefix is read with <unk>, as d2l would), not be refused.
    text = small_task.read_text()
    small_task.write_text(text[:text.index("[generate]")])
    corpus = small_task.parent / "small.txt"
    corpus.write_text(corpus.read_text().replace("v", "w").replace("V", "W"))
    task = load_task(str(small_task))
    assert task.prefixes == ("time traveller", "traveller") and not task.prefixes_declared
    assert "v" not in prepare(task, task.recipe).vocab.token_to_idx
