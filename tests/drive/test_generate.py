"""Generating text from a saved run: what rebuilds the model is read back from disk, so a
vocabulary or a record the harness did not write is one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.data.taskfile import load_task
from harness.drive.generate import generate
from harness.errors import CheckpointError
from harness.plan.fits import prepare, task_recipe
from harness.plugin.contracts import ModelSettings
from harness.results.checkpoints import encode_weights, save_checkpoint, save_vocab
from harness.results.schema import Record
from harness.results.store import RunStore
from harness_builtins.rnn import build_scratch
from helpers import blank_manifest

SOUND = {"num_hiddens": 16, "num_layers": 1, "dropout": 0.0, "reproducible": False}


def saved_run(tmp_path: Path, small_task: Path, model_settings: Any = SOUND,
              **vocab: Any) -> Path:
    """A run holding one untrained ``scratch`` checkpoint, its record's ``model_settings``
    and its vocabulary's fields (``vocab``) as the test says."""
    task = load_task(str(small_task))
    data = prepare(task, task_recipe(task))
    store = RunStore.create(tmp_path / "runs", blank_manifest())
    save_vocab(store, data)
    path = store.path / "checkpoints" / "vocab.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **vocab}))
    torch.manual_seed(0)
    weights = encode_weights(build_scratch(len(data.vocab), ModelSettings(num_hiddens=16),
                                           torch.device("cpu")))
    record = Record(key="scratch__sequential__seed0", model="scratch", sampler="sequential",
                    seed=0, model_settings=model_settings)
    store.append_record(record.with_changes(
        checkpoint=save_checkpoint(store, record.key, weights)))
    return store.path


def test_a_sound_run_generates(small_task: Path, tmp_path: Path) -> None:
    text = generate(saved_run(tmp_path, small_task), model="scratch", prefix="the", length=3)
    assert text.startswith("the")


@pytest.mark.parametrize("vocab", [{"tokenizer": "bpe"}, {"tokenizer": None},
                                   {"separator": 5}, {"separator": None}],
                         ids=["tokenizer", "tokenizer-null", "separator", "separator-null"])
def test_a_vocabulary_with_a_bad_tokenizer_or_separator_is_refused(
        small_task: Path, tmp_path: Path, vocab: dict) -> None:
    run = saved_run(tmp_path, small_task, **vocab)
    with pytest.raises(CheckpointError, match="vocab.json: not a vocabulary written by "
                                              "harness") as caught:
        generate(run, model="scratch", prefix="the", length=3)
    assert "\n" not in str(caught.value)


def test_a_vocabulary_whose_tokens_are_not_text_is_refused(small_task: Path,
                                                           tmp_path: Path) -> None:
    tokens = json.loads((saved_run(tmp_path / "a", small_task) / "checkpoints" /
                         "vocab.json").read_text())["tokens"]
    run = saved_run(tmp_path / "b", small_task, tokens=[*tokens, 5])
    with pytest.raises(CheckpointError, match="not a vocabulary written by harness"):
        generate(run, model="scratch", prefix="the", length=3)


@pytest.mark.parametrize("model_settings", [
    None, {}, {"num_hiddens": "x"}, {"num_hiddens": -1}, {"num_hiddens": 16, "x": 1},
    {"num_hiddens": 16, "num_layers": 0}, {"num_hiddens": 16, "dropout": 1.5},
], ids=["missing", "empty", "text", "negative", "unknown-key", "no-layers", "dropout"])
def test_a_record_with_model_settings_the_harness_does_not_write_is_refused(
        small_task: Path, tmp_path: Path, model_settings: Any) -> None:
    run = saved_run(tmp_path, small_task, model_settings)
    with pytest.raises(CheckpointError, match=r"^the record of scratch/sequential/seed0 has "
                                              r"model_settings the harness does not write: "):
        generate(run, model="scratch", prefix="the", length=3)


def test_settings_the_model_plugin_refuses_are_one_line(small_task: Path,
                                                        tmp_path: Path) -> None:
    run = saved_run(tmp_path, small_task, {**SOUND, "num_layers": 2})
    with pytest.raises(CheckpointError, match=r"^model 'scratch': .*cannot stack"):
        generate(run, model="scratch", prefix="the", length=3)
