import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.plan.recipe import Recipe
from harness.data.taskfile import load_task
from harness.plan.fits import prepare, task_recipe
from harness.train.decoding import generate_text
from harness.train.trainer import (MAX_LOSS, clip_gradients, evaluate, evaluation_batches,
                             perplexity, seed_everything, steady_rate, train)
from harness_builtins.rnn import build_scratch
from harness_builtins.samplers import SAMPLERS

CPU = torch.device("cpu")
SAMPLER = {s.name: s for s in SAMPLERS}


def seed_grad_clipping(params, theta):
    """The seed's ``grad_clipping``, verbatim."""
    norm = torch.sqrt(sum(torch.sum((p.grad ** 2)) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clipping_matches_seed(scale: float) -> None:
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(3))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        g = torch.randn_like(p) * scale
        p.grad, q.grad = g.clone(), g.clone()
    clip_gradients(a, 1.0)
    seed_grad_clipping(b, 1.0)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in a)).item()
    assert total <= 1.0 + 1e-5


def test_steady_rate_skips_the_warmup_epoch() -> None:
    assert steady_rate([1.0, 10.0, 12.0, 11.0]) == 11.0
    assert steady_rate([5.0]) == 5.0


def test_evaluation_batches_score_every_position_once() -> None:
    tokens = list(range(101))
    got = list(evaluation_batches(tokens, 4, 5))
    xs = sorted(torch.cat([X.reshape(-1) for X, _ in got]).tolist())
    assert xs == list(range(100)) and all(torch.equal(Y, X + 1) for X, Y in got)


class Uniform(nn.Module):
    """Predicts every token with equal probability: perplexity must be the vocab size."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.bias = nn.Parameter(torch.zeros(vocab))

    def begin_state(self, batch_size, device):
        return None

    def forward(self, X, state):
        return self.bias.expand(X.numel(), self.vocab), state


@pytest.fixture
def data(small_task: Path):
    task = load_task(str(small_task))
    return task, prepare(task, task_recipe(task))


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(data) -> None:
    task, dataset = data
    V = len(dataset.vocab)
    assert evaluate(Uniform(V), dataset.valid, recipe=task_recipe(task), carries=False,
                    device=CPU) == pytest.approx(V)
    recipe = task_recipe(task).with_overrides(lr=1e-12, epochs=2)
    result = train(Uniform(V), SAMPLER["random"], data=dataset, recipe=recipe, device=CPU,
                   rng=random.Random(0), prefixes=(), quiet=True)
    assert result.train_ppl == pytest.approx(V, rel=1e-6)
    assert [p.epoch for p in result.curve] == [1, 2]


def test_training_lowers_perplexity_and_records_everything(data) -> None:
    task, dataset = data
    rng = seed_everything(0)
    model = build_scratch(len(dataset.vocab), task_recipe(task).model_settings(), CPU)
    recipe = task_recipe(task).with_overrides(epochs=15, lr=1.0)
    result = train(model, SAMPLER["sequential"], data=dataset, recipe=recipe, device=CPU, rng=rng,
                   prefixes=("the time",), num_preds=10, quiet=True)
    assert result.status == "ok"
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert result.valid_ppl is not None and math.isfinite(result.valid_ppl)
    assert result.tokens_per_sec > 0 and result.num_params == sum(
        p.numel() for p in model.parameters())
    assert result.generated["the time"].startswith("the time")
    assert len(result.generated["the time"]) == len("the time") + 10


def test_the_between_epochs_call_comes_before_each_epoch_whose_threads_are_recorded(
        data) -> None:
    task, dataset = data
    V = len(dataset.vocab)
    threads = torch.get_num_threads()
    calls: list[int] = []

    def between_epochs() -> None:  # as a --jobs worker given another core after epoch 1
        calls.append(torch.get_num_threads())
        torch.set_num_threads(1 if len(calls) == 1 else 2)

    try:
        result = train(Uniform(V), SAMPLER["random"], data=dataset,
                       recipe=task_recipe(task).with_overrides(epochs=3), device=CPU,
                       rng=random.Random(0), prefixes=(), quiet=True, between_epochs=between_epochs)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 3
    assert [p.threads for p in result.curve] == [1, 2, 2]


def test_same_seed_gives_identical_numbers_and_generated_text(data) -> None:
    task, dataset = data

    def once():
        rng = seed_everything(7)
        model = build_scratch(len(dataset.vocab), task_recipe(task).model_settings(), CPU)
        r = train(model, SAMPLER["random"], data=dataset, recipe=task_recipe(task), device=CPU,
                  rng=rng, prefixes=("the",), num_preds=5, quiet=True)
        return [p.train_ppl for p in r.curve], r.valid_ppl, r.generated

    assert once() == once()


def test_non_finite_loss_stops_as_diverged(data) -> None:
    task, dataset = data
    rng = seed_everything(0)
    model = build_scratch(len(dataset.vocab), task_recipe(task).model_settings(), CPU)
    with torch.no_grad():
        model.W_hq.fill_(float("nan"))
    result = train(model, SAMPLER["sequential"], data=dataset, recipe=task_recipe(task),
                   device=CPU, rng=rng, quiet=True)
    assert result.status == "diverged" and result.train_ppl is None
    assert "non-finite" in result.error and result.curve == []


def test_generated_text_is_greedy_and_deterministic(data) -> None:
    _, dataset = data
    torch.manual_seed(0)
    model = build_scratch(len(dataset.vocab), Recipe(num_hiddens=8).model_settings(), CPU)

    def generated() -> str:
        return generate_text(model, "the ti", num_preds=7, vocab=dataset.vocab,
                             tokenizer=dataset.tokenizer, separator=dataset.separator,
                             device=CPU)

    a = generated()
    assert a == generated()
    assert a.startswith("the ti") and len(a) == 13


def test_a_loss_whose_perplexity_overflows_counts_as_divergence(data) -> None:
    assert perplexity(2.0) == math.exp(2.0) and perplexity(MAX_LOSS + 1) == math.inf
    task, dataset = data
    rng = seed_everything(0)
    model = build_scratch(len(dataset.vocab), task_recipe(task).model_settings(), CPU)
    with torch.no_grad():
        model.W_hq.mul_(1e6)  # finite, but logits far beyond what exp() can hold
    result = train(model, SAMPLER["sequential"], data=dataset, recipe=task_recipe(task),
                   device=CPU, rng=rng, quiet=True)
    assert result.status == "diverged" and "at step 1 of epoch 1" in result.error
