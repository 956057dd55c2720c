"""harness.testing: tiny data, a brief training, and contract checks that reject what
breaks the contract, each with a message that names the fault."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from harness import ConfigError, load_registry
from harness.plugin.contracts import ModelSettings, ModelSpec, SamplerSpec
from harness.testing import (TINY_RECIPE, brief_training, check_model_spec,
                             check_sampler_spec, invoke_cli, strict_mode_thread_dependence,
                             thread_check_possible, tiny_corpus, tiny_dataset, tiny_model,
                             write_tiny_task)
from harness_builtins.rnn import build_scratch
from harness_builtins.samplers import seq_data_iter_random, seq_data_iter_sequential

CPU = torch.device("cpu")


# --- tiny data and a brief training --------------------------------------------------------

def test_the_tiny_dataset_is_the_tiny_corpus_split_as_the_recipe_says() -> None:
    dataset = tiny_dataset()
    assert len(dataset.train) == TINY_RECIPE.max_tokens
    assert len(dataset.valid) == TINY_RECIPE.valid_tokens
    assert dataset.vocab.decode(dataset.train[:19]) == "the time traveller "
    assert dataset.tokenizer == "char" and "fox" in tiny_corpus()
    words = tiny_dataset(tokenizer="word", train_tokens=20, valid_tokens=5)
    assert (len(words.train), len(words.valid), words.separator) == (20, 5, " ")


def test_a_brief_training_lowers_the_loss_and_generates_from_the_tiny_prefix() -> None:
    dataset = tiny_dataset()
    spec = load_registry(autoload=False).model("scratch")
    result = brief_training(model=tiny_model(spec, dataset=dataset),
                            sampler=load_registry(autoload=False).sampler("random"))
    assert result.status == "ok" and len(result.curve) == TINY_RECIPE.epochs
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert list(result.generated) == ["the time"]


def test_a_recipe_the_tiny_data_cannot_hold_is_refused_before_training() -> None:
    spec = load_registry(autoload=False).model("scratch")
    with pytest.raises(ConfigError, match="training tokens"):
        brief_training(model=tiny_model(spec), sampler=seq_sampler(),
                       recipe=TINY_RECIPE.with_overrides(batch_size=500))


def test_the_tiny_task_file_runs_through_the_command_line(tmp_path: Path) -> None:
    task = write_tiny_task(tmp_path)
    out = tmp_path / "runs"
    result = invoke_cli(["run", "--task", str(task), "--models", "scratch", "--samplers",
                         "sequential", "--epochs", "1", "-o", str(out), "-q"], autoload=False)
    assert result.exit_code == 0, result.output
    assert (next(out.iterdir()) / "records.jsonl").is_file()


# --- model contract checks ---------------------------------------------------------------

class Wrapped(nn.Module):
    """The scratch RNN with one thing changed by ``change``: its (logits, state)."""

    def __init__(self, inner: nn.Module, change: Callable[[Tensor, Tensor, object], tuple]
                 ) -> None:
        super().__init__()
        self.inner, self.change = inner, change

    def begin_state(self, batch_size: int, device: torch.device) -> object:
        return self.inner.begin_state(batch_size, device)

    def forward(self, X: Tensor, state: object) -> tuple[Tensor, object]:
        logits, state = self.inner(X, state)
        return self.change(X, logits, state)


def broken(change: Callable[[Tensor, Tensor, object], tuple]) -> ModelSpec:
    return ModelSpec("broken", lambda V, settings, device:
                     Wrapped(build_scratch(V, settings, device), change))


def batch_major(X: Tensor, logits: Tensor, state: object) -> tuple:
    B, T = X.shape
    return logits.view(T, B, -1).transpose(0, 1).reshape(T * B, -1), state


class Unused(nn.Module):
    """The scratch RNN with an extra parameter that forward never uses."""

    def __init__(self, V: int, settings: ModelSettings, device: torch.device) -> None:
        super().__init__()
        self.inner = build_scratch(V, settings, device)
        self.unused = nn.Parameter(torch.zeros(3, device=device))

    def begin_state(self, batch_size: int, device: torch.device) -> object:
        return self.inner.begin_state(batch_size, device)

    def forward(self, X: Tensor, state: object) -> tuple[Tensor, object]:
        return self.inner(X, state)


class NoBeginState(nn.Module):
    def __init__(self, V: int, settings: ModelSettings, device: torch.device) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(V, V))

    def forward(self, X: Tensor, state: object) -> tuple[Tensor, object]:
        return self.table[X.T].reshape(-1, self.table.shape[0]), None


@pytest.mark.parametrize("spec, message", [
    (broken(batch_major), "logits must be time-major"),
    (ModelSpec("broken", Unused), "no gradient reaches parameter.s. unused"),
    (broken(lambda X, logits, state: (logits.view(*X.shape[::-1], -1), state)),
     r"logits of shape \(5, 3, 20\), expected \(steps \* batch, vocab\) = \(15, 20\)"),
    (broken(lambda X, logits, state: (logits, {"H": state})), "its state is a dict"),
    (broken(lambda X, logits, state: (logits.long(), state)), "not floating point"),
    (broken(lambda X, logits, state: logits), "forward must return a pair"),
    (broken(lambda X, logits, state: (torch.zeros_like(logits) + logits.sum() * 0, state)),
     "do not depend on the input tokens"),
    (broken(lambda X, logits, state: (logits, state[0].T)),
     "forward refused the state it returned"),
    (ModelSpec("broken", NoBeginState), "no begin_state"),
    (ModelSpec("broken", lambda V, settings, device: "not a model"), "not an nn.Module"),
], ids=["batch-major", "unused-parameter", "batch-by-step-logits", "dict-state",
        "integer-logits", "no-state", "ignores-input", "unusable-state", "no-begin-state",
        "not-a-module"])
def test_a_broken_model_is_rejected_naming_the_fault(spec: ModelSpec, message: str) -> None:
    with pytest.raises(AssertionError, match=f"model 'broken': .*{message}"):
        check_model_spec(spec)


def test_the_wrapper_itself_is_a_good_model() -> None:
    """The broken models above differ from a model that passes in their fault only."""
    assert check_model_spec(broken(lambda X, logits, state: (logits, state)))
    assert check_model_spec(ModelSpec("table", lambda V, settings, device: Wrapped(
        build_scratch(V, settings, device), lambda X, logits, state: (logits, state))))


def test_a_refusal_with_value_error_is_allowed_and_reported() -> None:
    assert check_model_spec(ModelSpec("scratch", build_scratch),
                            settings=ModelSettings(16, num_layers=2)) is False


def test_the_model_check_leaves_torchs_random_state_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    check_model_spec(ModelSpec("scratch", build_scratch))
    assert torch.equal(torch.rand(4), expected)


# --- sampler contract checks -------------------------------------------------------------

def seq_sampler(carries: bool = True) -> SamplerSpec:
    return SamplerSpec("sequential", seq_data_iter_sequential, carries_state=carries)


def transposed(corpus, batch_size, num_steps, rng):
    for X, Y in seq_data_iter_sequential(corpus, batch_size, num_steps, rng):
        yield X.T, Y.T


def unshifted(corpus, batch_size, num_steps, rng):
    for X, _ in seq_data_iter_sequential(corpus, batch_size, num_steps, rng):
        yield X, X


def unseeded(corpus, batch_size, num_steps, rng):
    return seq_data_iter_random(corpus, batch_size, num_steps, random.Random())


def floats(corpus, batch_size, num_steps, rng):
    for X, Y in seq_data_iter_sequential(corpus, batch_size, num_steps, rng):
        yield X.float(), Y.float()


@pytest.mark.parametrize("spec, message", [
    (SamplerSpec("broken", transposed, True), r"X \(5, 4\) and Y \(5, 4\), expected"),
    (SamplerSpec("broken", unshifted, True), "Y is not X shifted by one token"),
    (SamplerSpec("broken", seq_data_iter_random, carries_state=True),
     "carries_state is True, but row b of minibatch 1 does not continue"),
    (SamplerSpec("broken", unseeded, False), "the same seed gave other minibatches"),
    (SamplerSpec("broken", floats, True), "not torch.long"),
    (SamplerSpec("broken", lambda corpus, B, T, rng: iter(()), True), "no minibatch"),
], ids=["transposed", "unshifted", "random-claims-to-carry", "unseeded", "floats", "empty"])
def test_a_broken_sampler_is_rejected_naming_the_fault(spec: SamplerSpec, message: str) -> None:
    with pytest.raises(AssertionError, match=f"sampler 'broken': .*{message}"):
        check_sampler_spec(spec)


def test_a_sampler_that_does_not_carry_state_need_not_be_contiguous() -> None:
    check_sampler_spec(SamplerSpec("random", seq_data_iter_random, carries_state=False))


# --- thread-count independence -----------------------------------------------------------

class HookedTable(nn.Module):
    """Logits looked up from two tables; a hook scales ``a``'s gradient by the thread count,
    so that gradient, and no other, depends on it, in any mode."""

    def __init__(self, V: int, settings: ModelSettings, device: torch.device) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(V, V))
        self.b = nn.Parameter(torch.randn(V, V))
        self.a.register_hook(lambda grad: grad * torch.get_num_threads())

    def begin_state(self, batch_size: int, device: torch.device) -> None:
        return None

    def forward(self, X: Tensor, state: None) -> tuple[Tensor, None]:
        return (self.a[X.T] + self.b[X.T]).reshape(-1, self.a.shape[0]), None


@pytest.mark.skipif(not thread_check_possible(), reason="needs oneMKL and 2 cores")
def test_the_strict_mode_check_names_a_thread_dependent_parameter() -> None:
    spec = ModelSpec("hooked", HookedTable)
    assert check_model_spec(spec)
    assert strict_mode_thread_dependence(spec, settings=ModelSettings(8), vocab_size=5,
                                         batch_size=3, num_steps=4) == ["a"]


@pytest.mark.skipif(not thread_check_possible(), reason="needs oneMKL and 2 cores")
def test_the_strict_mode_check_finds_the_builtins_thread_invariant() -> None:
    spec = ModelSpec("scratch", build_scratch)
    assert strict_mode_thread_dependence(spec, settings=ModelSettings(512)) == []
