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


def test_a_task_with_splits_is_cut_at_its_own_fixed_boundaries(small_task: Path) -> None:
    whole = load_dataset(load_task(str(small_task)), max_tokens=10**9, valid_tokens=0).train
    text = small_task.read_text().replace("[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\n"
                                          "test = 0.1\n[recipe]")
    small_task.write_text(text)
    task = load_task(str(small_task))
    data = load_dataset(task, max_tokens=100, valid_tokens=50)  # not used with [splits]
    n = len(whole)
    assert len(data.train) == int(0.8 * n) and len(data.valid) == int(0.1 * n)
    assert data.train + data.valid + data.test == whole  # contiguous, in order, all of it
    assert data.bounds == (len(data.train), len(data.train) + len(data.valid), n)
    assert data.info()["test_tokens"] == len(data.test)


def test_a_split_task_that_leaves_a_part_empty_is_refused(small_task: Path) -> None:
    text = small_task.read_text().replace("[recipe]", "[splits]\ntrain = 0.5\n"
                                          "valid = 0.0001\n[recipe]")
    small_task.write_text(text)
    with pytest.raises(ConfigError, match=r"leaves the valid part empty"):
        load_dataset(load_task(str(small_task)), max_tokens=100, valid_tokens=50)


def test_raw_text_keeps_case_and_punctuation(small_task: Path) -> None:
    text = small_task.read_text().replace('tokenizer = "char"', 'tokenizer = "char"\n'
                                          'text = "raw"')
    small_task.write_text(text.replace('["the time"]', '["The Time"]'))
    data = load_dataset(load_task(str(small_task)), max_tokens=10**9, valid_tokens=0)
    raw = (small_task.parent / "small.txt").read_text()
    assert data.vocab.decode(data.train) == raw


def test_d2l_task_has_no_test_part(timemachine: Path) -> None:
    data = load_dataset(load_task("timemachine"), max_tokens=10_000, valid_tokens=5_000,
                        corpus=timemachine)
    assert data.test == [] and data.bounds is None and "test_tokens" not in data.info()


def test_timemachine_full_is_the_whole_book_split_80_10_10(timemachine: Path) -> None:
    data = load_dataset(load_task("timemachine-full"), max_tokens=1, valid_tokens=1,
                        corpus=timemachine)
    n = len(data.train) + len(data.valid) + len(data.test)
    assert len(data.vocab) == 28 and 170_000 < n < 180_000
    assert (len(data.train), len(data.valid)) == (int(0.8 * n), int(0.1 * n))
