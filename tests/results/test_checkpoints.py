import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import run
from harness.drive.generate import generate as api_generate
from harness.results.checkpoints import encode_weights, save_checkpoint, save_vocab
from harness.cli import main
from harness.plugin.contracts import ModelSettings
from harness.results.schema import Record
from harness.results.store import RunStore
from helpers import blank_manifest
from harness.data.taskfile import load_task
from harness.plan.fits import prepare, task_recipe
from harness_builtins.rnn import build_scratch

SETTINGS = ModelSettings(num_hiddens=16)


def generate(*args: str) -> object:
    return CliRunner().invoke(main, ["generate", *args])


def text_of(result) -> str:
    """The text ``harness generate`` printed, exactly: less only the one newline that
    click.echo ends it with (a generated text may itself end in a space)."""
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n"), result.stdout
    return result.stdout[:-1]


def continuation(text: str, prefix: str) -> int:
    """How many characters ``text`` (a character-level generation) adds to ``prefix``,
    counting the ``<unk>`` token an untrained model may emit as one."""
    assert text.startswith(prefix), (text, prefix)
    return len(text[len(prefix):].replace("<unk>", "?"))


def saved_run(tmp_path: Path, small_task: Path, weights: bytes) -> RunStore:
    """A run directory holding one checkpoint of ``scratch`` (written as the driver does),
    without training: the checkpoint's bytes are the test's to choose."""
    task = load_task(str(small_task))
    data = prepare(task, task_recipe(task))
    store = RunStore.create(tmp_path / "runs", blank_manifest())
    save_vocab(store, data)
    record = Record(key="scratch__sequential__seed0", model="scratch", sampler="sequential",
                    seed=0, model_settings={"num_hiddens": 16, "num_layers": 1, "dropout": 0.0})
    record = record.with_changes(checkpoint=save_checkpoint(store, record.key, weights))
    store.append_record(record)
    return store


def untrained(small_task: Path, seed: int = 0) -> bytes:
    """The weights of a new scratch model, drawn from ``seed``: the same whatever ran
    before."""
    task = load_task(str(small_task))
    torch.manual_seed(seed)
    return encode_weights(build_scratch(len(prepare(task, task_recipe(task)).vocab), SETTINGS,
                                        torch.device("cpu")))


def test_saved_weights_regenerate_the_runs_own_greedy_text(small_task: Path,
                                                            tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["sequential", "random"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=2, save_checkpoints=True)
    records = {r["sampler"]: r for r in map(json.loads, (result.path / "records.jsonl")
                                             .read_text().splitlines())}
    assert records["random"]["checkpoint"] == "checkpoints/scratch__random__seed0.pt"
    vocab = json.loads((result.path / "checkpoints" / "vocab.json").read_text())
    assert vocab["tokens"][0] == "<unk>" and vocab["tokenizer"] == "char"

    greedy = generate(str(result.path), "--model", "scratch", "--sampler", "random",
                    "--prefix", "the time", "--length", "10")
    assert text_of(greedy) == records["random"]["generated"]["the time"]
    alias = CliRunner().invoke(main, ["sample", str(result.path), "--model", "scratch",
                                      "--sampler", "random", "--prefix", "the time",
                                      "--length", "10"])  # the hidden old name
    assert alias.exit_code == 0 and alias.stdout == greedy.stdout

    drawn = [text_of(generate(str(result.path), "-m", "scratch", "-s", "random", "-p",
                              "the time", "-t", "1.5", "--top-k", "3", "--draw-seed", "7"))
             for _ in range(2)]
    assert drawn[0] == drawn[1] and continuation(drawn[0], "the time") == 50

    ambiguous = generate(str(result.path), "--model", "scratch", "--prefix", "the")
    assert ambiguous.exit_code == 2
    assert "several checkpoints match" in ambiguous.output
    assert "--sampler random" in ambiguous.output


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
    result = generate(str(store.path), "--model", "scratch", "--prefix", "the")
    assert result.exit_code == 2
    assert "refused" in result.output and "could run code" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_clear_error(small_task: Path, tmp_path: Path) -> None:
    weights = untrained(small_task)
    store = saved_run(tmp_path, small_task, weights[: len(weights) // 2])
    result = generate(str(store.path), "--model", "scratch", "--prefix", "the")
    assert result.exit_code == 2
    assert "truncated or corrupt" in result.output
    assert "scratch__sequential__seed0.pt" in result.output


def test_untrained_weights_load_and_generate(small_task: Path, tmp_path: Path) -> None:
    store = saved_run(tmp_path, small_task, untrained(small_task))
    result = generate(str(store.path), "--model", "scratch", "--prefix", "the", "-n", "5")
    assert continuation(text_of(result), "the") == 5


def test_runs_without_checkpoints_say_how_to_get_them(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, blank_manifest())
    result = generate(str(store.path), "--model", "scratch", "--prefix", "the")
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


def test_set_picks_the_checkpoint_of_a_grid_point(small_task: Path, tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["random"], task=str(small_task), epochs=1,
                 output_dir=tmp_path, quiet=True, save_checkpoints=True,
                 grid={"num_hiddens": [8, 16]})
    path = str(result.path)
    ambiguous = generate(path, "-m", "scratch", "-s", "random", "--seed", "0", "-p", "the")
    assert ambiguous.exit_code == 2 and "several checkpoints match" in ambiguous.output
    assert ("choose from: --model scratch --sampler random --seed 0 --set num_hiddens=8, "
            "--model scratch --sampler random --seed 0 --set num_hiddens=16") in ambiguous.output
    records = {r.settings["num_hiddens"]: r for r in RunStore(result.path).records()}
    for hidden, option in ((16, "hidden=16"), (8, "num_hiddens=8")):
        picked = generate(path, "-m", "scratch", "--set", option, "-p", "the time", "-n", "10")
        assert text_of(picked) == records[hidden].generated["the time"]
    assert api_generate(result.path, model="scratch", prefix="the time", length=10,
                        settings={"num_hiddens": 16}) == records[16].generated["the time"]
    for options, message in ((["--set", "hidden=32"], "no checkpoint matches"),
                             (["--set", "hidden=8,16"], "give one value"),
                             (["--set", "bogus=1"], "unknown setting 'bogus'")):
        refused = generate(path, "-m", "scratch", *options, "-p", "the")
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1


def test_the_prefix_is_preprocessed_as_the_corpus_was(small_task: Path, tmp_path: Path) -> None:
    store = saved_run(tmp_path, small_task, untrained(small_task))
    typed = generate(str(store.path), "-m", "scratch", "-p", "Time,  Traveller! ", "-n", "0")
    assert typed.exit_code == 0, typed.output
    assert typed.stdout == "time traveller \n"  # the trailing space the user typed stays
    greedy = [generate(str(store.path), "-m", "scratch", "-p", p, "-n", "8").stdout
              for p in ("THE Time", "the time")]
    assert greedy[0] == greedy[1] and "<unk>" not in greedy[0]


@pytest.mark.parametrize("options,message", [
    (["-t", "nan"], "temperature must be a finite number >= 0"),
    (["-t", "inf"], "temperature must be a finite number >= 0"),
    (["-t", "-1"], "temperature must be a finite number >= 0"),
    (["-t", "1", "--draw-seed", "99999999999999999999999"], "--draw-seed must be from 0 to"),
    (["-t", "1", "--draw-seed", "-1"], "--draw-seed must be from 0 to"),
])
def test_bad_drawing_options_are_one_line_errors(small_task: Path, tmp_path: Path,
                                                  options: list[str], message: str) -> None:
    store = saved_run(tmp_path, small_task, untrained(small_task))
    result = generate(str(store.path), "-m", "scratch", "-p", "the", *options)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_tiny_temperature_draws_the_likeliest_token(small_task: Path, tmp_path: Path) -> None:
    store = saved_run(tmp_path, small_task, untrained(small_task))
    args = [str(store.path), "-m", "scratch", "-p", "the", "-n", "10"]
    greedy = generate(*args)
    tiny = generate(*args, "-t", "1e-300", "--draw-seed", "3")
    assert tiny.exit_code == 0, tiny.output
    assert tiny.stdout == greedy.stdout
