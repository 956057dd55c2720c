from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.tasks import builtin_task_names, load_task, prepare


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


@pytest.mark.parametrize("text,match", [
    ("name = 'x'\n", "invalid task file"),
    ("name = 'x'\n[corpus]\nsha1 = 'a'\n", "url or a path"),
    ("name = 'x'\ntokenizer = 'byte'\n[corpus]\npath = 'a'\n", "tokenizer"),
    ("name = 'x'\n[corpus]\npath = 'a'\n[recipe]\nepoch = 3\n", "unknown recipe setting"),
    ("not toml [", "invalid task file"),
])
def test_bad_task_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_task(str(path))


def test_unknown_task_lists_choices() -> None:
    with pytest.raises(ConfigError, match="choose from: .*timemachine"):
        load_task("nosuchtask")
