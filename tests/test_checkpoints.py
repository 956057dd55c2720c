import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness.api import run
from harness.checkpoints import encode_weights, save_checkpoint, save_vocab
from harness.cli import main
from harness.contracts import ModelSettings
from harness.store import RunStore
from harness.tasks import load_task, prepare
from harness_builtins.rnn import build_scratch

SETTINGS = ModelSettings(num_hiddens=16)


def sample(*args: str) -> object:
    return CliRunner().invoke(main, ["sample", *args])


def saved_run(tmp_path: Path, small_task: Path, weights: bytes) -> RunStore:
    """A run directory holding one checkpoint of ``scratch`` (written as the driver does),
    without training: the checkpoint's bytes are the test's to choose."""
    task = load_task(str(small_task))
    data = prepare(task, task.recipe)
    store = RunStore.create(tmp_path / "runs", {"status": "complete"})
    save_vocab(store, data)
    record = {"key": "scratch__sequential__seed0", "model": "scratch",
              "sampler": "sequential", "seed": 0, "status": "ok",
              "model_settings": {"num_hiddens": 16, "num_layers": 1, "dropout": 0.0}}
    record["checkpoint"] = save_checkpoint(store, record["key"], weights)
    store.append_record(record)
    return store


def untrained(small_task: Path) -> bytes:
    task = load_task(str(small_task))
    return encode_weights(build_scratch(len(prepare(task, task.recipe).vocab), SETTINGS,
                                        torch.device("cpu")))


def test_saved_weights_regenerate_the_runs_own_greedy_sample(small_task: Path,
                                                              tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=2, save_checkpoints=True)
    records = {r["sampler"]: r for r in map(json.loads, (result.path / "records.jsonl")
                                             .read_text().splitlines())}
    assert records["random"]["checkpoint"] == "checkpoints/scratch__random__seed0.pt"
    vocab = json.loads((result.path / "checkpoints" / "vocab.json").read_text())
    assert vocab["tokens"][0] == "<unk>" and vocab["tokenizer"] == "char"

    greedy = sample(str(result.path), "--model", "scratch", "--sampler", "random",
                    "--prefix", "the time", "--length", "10")
    assert greedy.exit_code == 0, greedy.output
    assert greedy.stdout.strip() == records["random"]["samples"]["the time"]

    drawn = [sample(str(result.path), "-m", "scratch", "-s", "random", "-p", "the time",
                    "-t", "1.5", "--top-k", "3", "--draw-seed", "7").stdout for _ in range(2)]
    assert drawn[0] == drawn[1] and drawn[0].startswith("the time")
    assert len(drawn[0].strip()) == len("the time") + 50

    ambiguous = sample(str(result.path), "--model", "scratch", "--prefix", "the")
    assert ambiguous.exit_code == 2
    assert "several checkpoints match" in ambiguous.output and "--sampler random" in ambiguous.output


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused(small_task: Path, tmp_path: Path,
                                                      how: str) -> None:
    marker = tmp_path / "pwned"
    store = saved_run(tmp_path, small_task, untrained(small_task))
    target = store.path / "checkpoints" / "scratch__sequential__seed0.pt"
    payload = {"W_xh": RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, target)
    else:
        target.write_bytes(pickle.dumps(payload))
    result = sample(str(store.path), "--model", "scratch", "--prefix", "the")
    assert result.exit_code == 2
    assert "refused" in result.output and "could run code" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_clear_error(small_task: Path, tmp_path: Path) -> None:
    weights = untrained(small_task)
    store = saved_run(tmp_path, small_task, weights[: len(weights) // 2])
    result = sample(str(store.path), "--model", "scratch", "--prefix", "the")
    assert result.exit_code == 2
    assert "truncated or corrupt" in result.output and "scratch__sequential__seed0.pt" in result.output


def test_untrained_weights_load_and_generate(small_task: Path, tmp_path: Path) -> None:
    store = saved_run(tmp_path, small_task, untrained(small_task))
    result = sample(str(store.path), "--model", "scratch", "--prefix", "the", "-n", "5")
    assert result.exit_code == 0 and len(result.stdout.strip()) == 8


def test_runs_without_checkpoints_say_how_to_get_them(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, {"status": "complete"})
    result = sample(str(store.path), "--model", "scratch", "--prefix", "the")
    assert result.exit_code == 2 and "--save-checkpoints" in result.output


class WithExtraState(torch.nn.Module):
    """A module that keeps plain Python values in its state_dict (``get_extra_state``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def get_extra_state(self) -> dict:
        return {"window": 128}

    def set_extra_state(self, state: dict) -> None:
        self.window = state["window"]


def test_extra_state_is_saved_beside_the_tensors() -> None:
    import io

    saved = torch.load(io.BytesIO(encode_weights(WithExtraState())), weights_only=True)
    assert saved["_extra_state"] == {"window": 128}
    assert torch.equal(saved["weight"], torch.ones(2))
