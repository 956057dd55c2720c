import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.plan.recipe import Recipe
from harness.plugin.contracts import SamplerSpec
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


# --- the loop against d2l's, step by step -------------------------------------------------

def recorded(model: nn.Module, sampler_name: str):
    """``model`` and a copy of ``sampler_name``'s sampler that record, for every training
    step, the minibatch (per epoch) and the logits the trainer computed its loss from."""
    epochs: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    logits: list[torch.Tensor] = []
    spec = SAMPLER[sampler_name]

    def batches(corpus, batch_size, num_steps, rng):
        epochs.append([])
        for X, Y in spec.batches(corpus, batch_size, num_steps, rng):
            epochs[-1].append((X, Y))
            yield X, Y

    forward = model.forward

    def recording(X, state):
        out, state = forward(X, state)
        if model.training:
            logits.append(out.detach().clone())
        return out, state

    model.forward = recording
    return SamplerSpec(spec.name, batches, spec.carries_state), epochs, logits


def seed_steps(model: nn.Module, epochs, *, lr: float, clip: float, carries: bool):
    """d2l's ``train_epoch_ch8`` step over the given minibatches, with clipping at ``clip``:
    fresh or detached state, mean cross-entropy, backward, the seed's clipping, the seed's
    ``sgd`` (which zeroes the gradients after the update). Per epoch, each step's loss and
    gradient norm before clipping."""
    import d2l_seed

    params = list(model.parameters())
    losses, norms = [], []
    for batches in epochs:
        state, losses_epoch = None, []
        for X, Y in batches:
            if state is None or not carries:
                state = model.begin_state(X.shape[0], CPU)
            else:
                state = tuple(s.detach() for s in state)
            logits, state = model(X, state)
            loss = F.cross_entropy(logits, Y.T.reshape(-1))
            loss.backward()
            norms.append(torch.sqrt(sum((p.grad ** 2).sum() for p in params)).item())
            seed_grad_clipping(params, clip)
            d2l_seed.sgd(params, lr, batch_size=1)
            losses_epoch.append(loss.item())
        losses.append(losses_epoch)
    return losses, norms


def train_beside_the_seed(data, sampler_name: str, **recipe: object):
    """The scratch RNN trained by :func:`train` and, from the same weights on the same
    minibatches, by :func:`seed_steps`: the result, the trainer's and the seed's per-epoch
    step losses, both models, and the seed's gradient norms."""
    task, dataset = data
    recipe = task_recipe(task).with_overrides(**recipe)
    rng = seed_everything(0)
    model = build_scratch(len(dataset.vocab), recipe.model_settings(), CPU)
    seed = build_scratch(len(dataset.vocab), recipe.model_settings(), CPU)
    seed.load_state_dict(model.state_dict())
    sampler, epochs, logits = recorded(model, sampler_name)
    result = train(model, sampler, data=dataset, recipe=recipe, device=CPU, rng=rng,
                   quiet=True)
    assert result.status == "ok" and len(epochs) == recipe.epochs
    steps = iter(logits)
    ours = [[F.cross_entropy(next(steps), Y.T.reshape(-1)).item() for _, Y in batches]
            for batches in epochs]
    theirs, norms = seed_steps(seed, epochs, lr=recipe.lr, clip=recipe.clip,
                               carries=sampler.carries_state)
    return result, ours, theirs, model, seed, norms


def test_every_step_is_the_seeds_step_clipped_and_from_fresh_gradients(data) -> None:
    # clip 0.05: below every step's gradient norm, so that every step is clipped
    result, ours, theirs, model, seed, norms = train_beside_the_seed(
        data, "sequential", epochs=2, lr=1.0, clip=0.05)
    assert min(norms) > 0.05 * 2  # the clipping matters at every step
    for epoch, (mine, seeds) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == pytest.approx(seeds, rel=1e-5), f"epoch {epoch + 1}'s step losses"
    for (name, mine), theirs in zip(model.named_parameters(), seed.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7,
                                   msg=lambda m, name=name: f"{name} as trained: {m}")


def test_each_epochs_perplexity_is_the_mean_loss_of_that_epoch_alone(data) -> None:
    result, ours, theirs, *_ = train_beside_the_seed(data, "random", epochs=3, lr=1.0)
    means = [sum(losses) / len(losses) for losses in ours]
    assert means[0] - means[-1] > 0.1  # learning: a running mean would lag behind
    assert [p.train_ppl for p in result.curve] == pytest.approx(
        [math.exp(m) for m in means], rel=1e-6)
    assert [p.train_ppl for p in result.curve] == pytest.approx(
        [math.exp(sum(losses) / len(losses)) for losses in theirs], rel=1e-5)


class Clock:
    """A stand-in for the trainer's ``time``: 1 s passes in each training step's forward
    pass, ``eval_seconds`` in each validation forward pass, and nothing otherwise."""

    def __init__(self, model: nn.Module, eval_seconds: float) -> None:
        self.now = 0.0
        forward = model.forward

        def timed(X, state):
            self.now += 1.0 if model.training else eval_seconds
            return forward(X, state)

        model.forward = timed

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.parametrize("valid", [False, True], ids=["no-validation", "validated-each-epoch"])
def test_tokens_per_second_are_the_target_tokens_over_the_training_time_alone(
        data, valid: bool, monkeypatch) -> None:
    import harness.train.trainer as trainer

    task, dataset = data
    if not valid:
        dataset = replace(dataset, valid=[])
    recipe = task_recipe(task).with_overrides(epochs=3)
    assert recipe.eval_every == 1
    model = Uniform(len(dataset.vocab))
    monkeypatch.setattr(trainer, "time", Clock(model, eval_seconds=1000.0))
    result = train(model, SAMPLER["sequential"], data=dataset, recipe=recipe, device=CPU,
                   rng=random.Random(0), quiet=True)
    assert (result.valid_ppl is not None) == valid
    # each step scores batch_size x num_steps target tokens in 1 s
    per_step = recipe.batch_size * recipe.num_steps
    assert [p.tokens_per_sec for p in result.curve] == [per_step] * 3
    assert result.tokens_per_sec == per_step


class Remembers(nn.Module):
    """Uniform predictions on a fresh state; once the state has been carried from an
    earlier minibatch, predictions shifted by a fixed vector. The state counts the
    minibatches it has seen."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.shift = torch.linspace(-2.0, 2.0, vocab)

    def begin_state(self, batch_size, device):
        return torch.zeros(batch_size, device=device)

    def forward(self, X, state):
        carried = (state > 0).float().repeat(X.shape[1])  # time-major rows
        return self.bias + carried[:, None] * self.shift, state + 1


@pytest.mark.parametrize("sampler", ["sequential", "sequential-reset"])
def test_validation_follows_the_samplers_state_rule(data, sampler: str) -> None:
    task, dataset = data
    recipe = task_recipe(task).with_overrides(epochs=1, lr=1e-12)
    V = len(dataset.vocab)
    result = train(Remembers(V), SAMPLER[sampler], data=dataset, recipe=recipe, device=CPU,
                   rng=random.Random(0), quiet=True)
    # by hand: the first minibatch from a fresh state, the others from the carried one
    # when the sampler carries state, else from a fresh one too
    batches = list(evaluation_batches(dataset.valid, recipe.batch_size, recipe.num_steps))
    assert len(batches) > 1
    carries = SAMPLER[sampler].carries_state
    total = count = 0.0
    for i, (_, Y) in enumerate(batches):
        logits = (Remembers(V).shift if carries and i > 0 else torch.zeros(V)).expand(Y.numel(), V)
        total += F.cross_entropy(logits, Y.T.reshape(-1), reduction="sum").item()
        count += Y.numel()
    expected = math.exp(total / count)
    assert result.valid_ppl == pytest.approx(expected, rel=1e-6)
    assert (expected == pytest.approx(V)) != carries  # the two rules differ on this data
    assert evaluate(Remembers(V), dataset.valid, recipe=recipe, carries=carries,
                    device=CPU) == pytest.approx(expected, rel=1e-6)
