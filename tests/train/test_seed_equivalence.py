"""The harness's trainer and optimised built-in models train exactly like the seed's code.

On the Time Machine text, with the seed's recipe (32 x 35 minibatches of sequential
partitioning, the state carried across them, clipping at 1, SGD with lr 1), the harness's
own :func:`harness.train.trainer.train` runs one epoch (8 minibatches) of a built-in scratch
model, and d2l's own ``train_epoch_ch8`` (``benchmarks/d2l_seed.py``, a verbatim copy of the
seed's code path) one epoch of the seed's model, from the same weights, on the same batches
(both samplers draw the offset from a generator seeded alike). At every step the loss and
every parameter's gradient (as backpropagation leaves it, before clipping) agree up to
summation order, and so do the epoch's perplexities and what training changed in the
weights.

Gradients, not only losses: a model that cuts backpropagation through time computes the
same first loss (its forward pass is unchanged) and close ones for a few steps after,
but gradients 6% to 46% off from the first step. Two threads, so the scratch RNN runs its
recurrence in two row blocks as it does in the benchmarks.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.data.dataset import load_dataset
from harness.data.taskfile import load_task
from harness.plan.recipe import Recipe
from harness.plugin.contracts import ModelSettings, SamplerSpec
from harness.train.trainer import train
from harness_builtins.gated import build_scratch_gru, build_scratch_lstm
from harness_builtins.rnn import build_scratch
from harness_builtins.samplers import seq_data_iter_sequential

import d2l_seed  # benchmarks/d2l_seed.py, on sys.path through conftest

CPU = torch.device("cpu")
BUILDERS = {"scratch": build_scratch, "scratch-gru": build_scratch_gru,
            "scratch-lstm": build_scratch_lstm}
RECIPE = Recipe(epochs=1, batch_size=32, num_steps=35, num_hiddens=64, lr=1.0, clip=1.0,
                max_tokens=10_000, valid_tokens=0)
"""The seed's recipe (64 hidden units rather than 512, to keep the test quick): 10,000
training tokens make 8 minibatches of 32 x 35."""
OFFSET_SEED = 3


def test_the_seed_has_all_three_scratch_models() -> None:
    assert set(d2l_seed.SCRATCH) == set(BUILDERS)


def d2l_order(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The model's named parameters in the order of d2l's ``get_params``."""
    named = dict(model.named_parameters())
    if hasattr(model, "layers"):  # ScratchStack: one layer's gate parameters, then W_hq, b_q
        layer = [(f"layers.0.{n}", p) for n, p in model.layers[0].named_parameters()]
        return [*layer, ("W_hq", named["W_hq"]), ("b_q", named["b_q"])]
    return list(named.items())


def record_gradients(params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Per parameter, its gradient after every backward pass, as backpropagation left it
    (a hook that runs once the gradient is accumulated, before clipping or the update)."""
    seen: list[list[torch.Tensor]] = [[] for _ in params]
    for p, into in zip(params, seen):
        p.register_post_accumulate_grad_hook(lambda p, into=into: into.append(p.grad.clone()))
    return seen


def ours_and_seeds(name: str, timemachine: Path) -> dict:
    """One epoch by the harness's trainer and one by the seed's ``train_epoch_ch8``, from the
    same weights: per step, the batches, losses and gradients of each; the perplexities;
    the parameters at the start and as each side trained them."""
    task = load_task("timemachine")
    data = load_dataset(task, max_tokens=RECIPE.max_tokens, valid_tokens=0, corpus=timemachine)
    vocab_size = len(data.vocab)
    assert vocab_size == 28
    torch.manual_seed(0)
    ours = BUILDERS[name](vocab_size, ModelSettings(RECIPE.num_hiddens), CPU)
    get_params, init_state, forward_fn = d2l_seed.SCRATCH[name]
    seed = d2l_seed.RNNModelScratch(vocab_size, RECIPE.num_hiddens, CPU, get_params,
                                    init_state, forward_fn)
    named = d2l_order(ours)
    start = [p.detach().clone() for _, p in named]
    with torch.no_grad():  # the seed's parameters, in get_params order, are ours
        for theirs, (_, mine) in zip(seed.params, named, strict=True):
            theirs.copy_(mine)

    # ours: the harness's trainer, its sampler (d2l's sequential partitioning); the batches
    # and the logits of every training step recorded on the way
    batches_ours, logits_ours = [], []

    def sampled(corpus, batch_size, num_steps, rng):
        for X, Y in seq_data_iter_sequential(corpus, batch_size, num_steps, rng):
            batches_ours.append((X, Y))
            yield X, Y

    forward = ours.forward

    def recorded(X, state):
        logits, state = forward(X, state)
        logits_ours.append(logits.detach().clone())
        return logits, state

    ours.forward = recorded
    grads_ours = record_gradients([p for _, p in named])
    result = train(ours, SamplerSpec("sequential", sampled, carries_state=True), data=data,
                   recipe=RECIPE, device=CPU, rng=random.Random(OFFSET_SEED), quiet=True)
    assert result.status == "ok"
    losses_ours = [F.cross_entropy(logits, Y.T.reshape(-1)).item()
                   for logits, (_, Y) in zip(logits_ours, batches_ours, strict=True)]

    # the seed's: train_epoch_ch8 over its own SeqDataLoader, the offset drawn from Python's
    # random seeded alike
    batches_seed, losses_seed = [], []
    cross_entropy = nn.CrossEntropyLoss()

    def loss(y_hat, y):
        value = cross_entropy(y_hat, y)
        losses_seed.append(value.item())
        return value

    loader = d2l_seed.SeqDataLoader(data.train, RECIPE.batch_size, RECIPE.num_steps,
                                    use_random_iter=False)

    def iterate():
        for X, Y in loader:
            batches_seed.append((X, Y))
            yield X, Y

    grads_seed = record_gradients(seed.params)
    random.seed(OFFSET_SEED)
    ppl_seed, _ = d2l_seed.train_epoch_ch8(
        seed, iterate(), loss, lambda batch_size: d2l_seed.sgd(seed.params, RECIPE.lr,
                                                               batch_size),
        CPU, use_random_iter=False)
    return dict(
        names=[n for n, _ in named],
        batches=(batches_ours, batches_seed), losses=(losses_ours, losses_seed),
        grads=(grads_ours, grads_seed), ppl=(result.train_ppl, ppl_seed),
        params=(start, [p.detach() for _, p in named], [p.detach() for p in seed.params]))


def assert_near(mine: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    """Equal up to summation order: the difference under 1e-4 of the seed's tensor, in
    norm. (Elementwise tolerances say little here: gradient entries are around 1e-6.) Over
    these 8 steps the two sides differ by under 4e-7; cutting backpropagation through time
    changes the gradients by 8e-2 and more."""
    error = ((mine - theirs).norm() / theirs.norm()).item()
    assert error < 1e-4, f"{what}: differs from the seed's by {error:.1e} of its norm"


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")  # the seed's
@pytest.mark.parametrize("name", sorted(BUILDERS))                                 # Accumulator
def test_the_trainer_trains_every_scratch_model_as_the_seeds_train_epoch_ch8(
        name: str, timemachine: Path, two_threads: None) -> None:
    got = ours_and_seeds(name, timemachine)
    batches_ours, batches_seed = got["batches"]
    assert len(batches_ours) == len(batches_seed) == 8
    for (X, Y), (X_seed, Y_seed) in zip(batches_ours, batches_seed):
        assert torch.equal(X, X_seed) and torch.equal(Y, Y_seed)
    losses_ours, losses_seed = got["losses"]
    assert len(losses_ours) == len(losses_seed) == 8
    assert losses_seed[-1] < losses_seed[0] - 0.2  # the text is being learned
    grads_ours, grads_seed = got["grads"]
    for step, (l_ours, l_seed) in enumerate(zip(losses_ours, losses_seed, strict=True)):
        assert l_ours == pytest.approx(l_seed, rel=1e-5), f"{name}: loss at step {step}"
        for param, mine, theirs in zip(got["names"], grads_ours, grads_seed, strict=True):
            assert len(mine) == len(theirs) == 8, param
            assert_near(mine[step], theirs[step], f"{name}: gradient of {param} at step {step}")
    ppl_ours, ppl_seed = got["ppl"]
    assert ppl_ours == pytest.approx(ppl_seed, rel=1e-5)
    for param, start, mine, theirs in zip(got["names"], *got["params"], strict=True):
        assert_near(mine - start, theirs - start, f"{name}: {param}'s change over the epoch")
