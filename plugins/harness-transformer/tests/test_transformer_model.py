import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.plugin.contracts import ModelSettings, detach_state
from harness.plugin.manager import load_registry
from harness.machine.determinism import VARIABLE
from harness.data.tasks import load_task, prepare
from harness.train.trainer import predict, seed_everything, train
from harness_transformer.model import CausalTransformer, LayerNorm, num_heads

CPU = torch.device("cpu")
V = 20


def model(max_len: int = 32, layers: int = 2, width: int = 32) -> CausalTransformer:
    torch.manual_seed(0)
    m = CausalTransformer(V, ModelSettings(width, layers), CPU, max_len=max_len)
    return m.eval()


def test_logits_are_time_major_and_the_state_is_the_context_window() -> None:
    m = model()
    state = m.begin_state(3, CPU)
    assert state.shape == (3, 0) and state.dtype == torch.long
    X = torch.randint(0, V, (3, 7))
    logits, state = m(X, state)
    assert logits.shape == (7 * 3, V) and torch.equal(state, X)
    for _ in range(10):  # the window slides: the last max_len - 1 tokens
        X = torch.randint(0, V, (3, 7))
        _, state = m(X, state)
    assert state.shape == (3, 31) and torch.equal(state[:, -7:], X)
    assert detach_state(state) is not None and torch.equal(detach_state(state), state)


def test_changing_a_future_token_leaves_earlier_logits_alone() -> None:
    m = model()
    X = torch.randint(0, V, (2, 20))
    before, _ = m(X, m.begin_state(2, CPU))
    X[:, 12] = (X[:, 12] + 1) % V
    after, _ = m(X, m.begin_state(2, CPU))
    before, after = before.view(20, 2, V), after.view(20, 2, V)  # time-major rows
    torch.testing.assert_close(before[:12], after[:12])
    assert not torch.allclose(before[12], after[12])


def test_one_token_at_a_time_with_the_state_equals_one_pass() -> None:
    m = model()
    X = torch.randint(0, V, (2, 25))
    whole, _ = m(X, m.begin_state(2, CPU))
    state, steps = m.begin_state(2, CPU), []
    for t in range(25):  # as harness.train.trainer.predict feeds it
        logits, state = m(X[:, t: t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps), whole, rtol=1e-4, atol=1e-5)
    # and two minibatches with the state carried (the sequential sampler) as well
    first, state = m(X[:, :10], m.begin_state(2, CPU))
    second, _ = m(X[:, 10:], state)
    torch.testing.assert_close(torch.cat((first, second)), whole, rtol=1e-4, atol=1e-5)


def test_tokens_beyond_the_window_are_forgotten() -> None:
    m = model(max_len=16)
    X = torch.randint(0, V, (1, 40))
    state = m.begin_state(1, CPU)
    for t in range(0, 30, 10):
        _, state = m(X[:, t: t + 10], state)
    alone, _ = m(X[:, 30:], state[:, -(16 - 10):])  # the 6 tokens that fit before 10 steps
    carried, _ = m(X[:, 30:], state)
    torch.testing.assert_close(carried, alone)


def test_eval_looks_back_no_further_than_training_did() -> None:
    m = model(max_len=32).train()
    m(torch.randint(0, V, (2, 6)), m.begin_state(2, CPU))  # a reset sampler: 6-token windows
    assert m.trained_context == 6
    m.eval()
    state, X = torch.randint(0, V, (2, 20)), torch.randint(0, V, (2, 1))
    torch.testing.assert_close(m(X, state)[0], m(X, state[:, -5:])[0])
    copy = model(max_len=32)
    copy.load_state_dict(m.state_dict())  # the trained window is part of the weights
    assert copy.trained_context == 6
    # tensors only, as harness's checkpoints (torch.load(weights_only=True)) require
    assert all(isinstance(v, torch.Tensor) for v in m.state_dict().values())


def test_too_many_steps_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="exceed the transformer's 16 positions"):
        model(max_len=16)(torch.zeros((1, 17), dtype=torch.long), torch.zeros((1, 0)).long())


def test_heads_are_about_64_wide_and_divide_the_width() -> None:
    assert [num_heads(w) for w in (32, 64, 96, 192, 256, 512)] == [1, 1, 1, 3, 4, 8]


@pytest.mark.parametrize("reproducible", [False, True])
def test_layer_norm_is_torchs_layer_norm(reproducible: bool, monkeypatch) -> None:
    if reproducible:  # the mode's switch as the model reads it; oneMKL needs no change here
        monkeypatch.setenv(VARIABLE, "AUTO,STRICT")
    else:
        monkeypatch.delenv(VARIABLE, raising=False)
    torch.manual_seed(0)
    ours, torchs = LayerNorm(48), torch.nn.LayerNorm(48)
    assert ours.state_dict().keys() == torchs.state_dict().keys()  # checkpoints fit both
    with torch.no_grad():
        for module in (ours, torchs):
            module.weight.copy_(torch.linspace(0.5, 1.5, 48))
            module.bias.copy_(torch.linspace(-1.0, 1.0, 48))
    x = (torch.randn(6, 5, 48) * 3 + 1).requires_grad_(True)
    grad = torch.randn(6, 5, 48)
    results = []
    for module in (ours, torchs):
        out = module(x)
        results.append((out, *torch.autograd.grad(out, (x, module.weight, module.bias), grad)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_its_gradients_do_not_depend_on_the_thread_count_in_reproducible_mode() -> None:
    """What ``harness run --reproducible`` promises: measured in a fresh process in
    oneMKL's strict mode, two layers of width 256 over a (32, 35) batch."""
    code = (
        "import torch\n"
        "from harness.machine.determinism import make_thread_invariant, thread_dependent_parameters\n"
        "make_thread_invariant()\n"
        "from harness.plugin.contracts import ModelSettings\n"
        "from harness_transformer.model import CausalTransformer\n"
        "torch.manual_seed(0)\n"
        "m = CausalTransformer(28, ModelSettings(256, 2), torch.device('cpu'))\n"
        "X, Y = torch.randint(0, 28, (2, 32, 35))\n"
        "print(thread_dependent_parameters(m, X, Y, threads=2))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if k != VARIABLE})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def data(tiny_task: Path):
    task = load_task(str(tiny_task))
    return task, prepare(task, task.recipe)


@pytest.mark.parametrize("sampler, window", [("random", 8), ("sequential", 128)])
def test_it_learns_under_the_harness_trainer(data, sampler: str, window: int) -> None:
    task, dataset = data
    registry = load_registry(autoload=True)
    recipe = task.recipe.with_overrides(epochs=3, max_tokens=800)
    rng = seed_everything(0)
    m = registry.model("transformer").factory(len(dataset.vocab), recipe.model_settings(), CPU)
    result = train(m, registry.sampler(sampler), dataset, recipe, CPU, rng,
                   prefixes=("the time",), num_preds=10, quiet=True)
    assert result.status == "ok", result.error
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert result.curve[-1].train_ppl < 0.75 * len(dataset.vocab)  # untrained: ~uniform
    assert math.isfinite(result.valid_ppl)
    # reset samplers: the context is exactly the minibatch's steps; sequential: the window
    assert m.trained_context == window
    sample = predict(m, "the time", 10, dataset, CPU)
    assert sample.startswith("the time") and len(sample) == len("the time") + 10
