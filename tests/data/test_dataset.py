from pathlib import Path

import pytest

from harness.data.dataset import load_dataset
from harness.data.taskfile import load_task
from harness.errors import ConfigError


def test_timemachine_split(timemachine: Path) -> None:
    task = load_task("timemachine")
    data = load_dataset(task, max_tokens=10_000, valid_tokens=5_000, corpus=timemachine)
    assert len(data.vocab) == 28 and len(data.train) == 10_000 and len(data.valid) == 5_000
    everything = load_dataset(task, max_tokens=15_000, valid_tokens=5_000, corpus=timemachine)
    assert everything.train[10_000:] == data.valid  # validation follows the training slice


def test_the_slices_are_the_counts_given(small_task: Path) -> None:
    task = load_task(str(small_task))
    data = load_dataset(task, max_tokens=1500, valid_tokens=300)
    assert len(data.train) == 1500 and len(data.valid) == 300
    assert data.info()["vocab_size"] == len(data.vocab) and data.separator == ""
    # Past the corpus's end the slices are simply shorter: fitting is the plan's check.
    short = load_dataset(task, max_tokens=10**6, valid_tokens=300)
    assert short.valid == [] and len(short.train) < 10**6


def test_prefixes_the_corpus_never_has_are_refused_before_training(small_task: Path) -> None:
    text = small_task.read_text().replace('["the time"]', '["the Time", "the 1"]')
    small_task.write_text(text)
    task = load_task(str(small_task))
    with pytest.raises(ConfigError, match=r"prefix 'the Time' has tokens the corpus never "
                       r"has: 'T' \(preprocessing"):
        load_dataset(task, max_tokens=1500, valid_tokens=300)


def test_a_task_without_prefixes_fits_any_corpus(small_task: Path) -> None:
    # No [generate] prefixes: no text to generate, nothing to hold against a corpus without 'v'.
    text = small_task.read_text()
    small_task.write_text(text[:text.index("[generate]")])
    corpus = small_task.parent / "small.txt"
    corpus.write_text(corpus.read_text().replace("v", "w").replace("V", "W"))
    task = load_task(str(small_task))
    assert task.prefixes == ()
    data = load_dataset(task, max_tokens=1500, valid_tokens=300)
    assert "v" not in data.vocab.token_to_idx
