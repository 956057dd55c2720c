import math

import pytest
import torch

from harness import load_registry
from harness.plugin.contracts import ModelSettings, detach_state
from harness.testing import (TINY_PREFIX, brief_training, check_model_spec,
                             strict_mode_thread_dependence, thread_check_possible,
                             tiny_dataset, tiny_model)
from harness_transformer import TRANSFORMER
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
    for t in range(25):  # as the harness's greedy generation feeds it
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
def test_layer_norm_is_torchs_layer_norm(reproducible: bool) -> None:
    torch.manual_seed(0)
    ours, torchs = LayerNorm(48, reproducible=reproducible), torch.nn.LayerNorm(48)
    assert ours.split is reproducible  # the split form only where the run asks for it
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


def test_the_run_s_mode_reaches_every_layer_norm_through_the_settings() -> None:
    for reproducible in (False, True):
        m = CausalTransformer(V, ModelSettings(32, 2, reproducible=reproducible), CPU)
        norms = [module for module in m.modules() if isinstance(module, LayerNorm)]
        assert len(norms) == 5 and all(n.split is reproducible for n in norms)


@pytest.mark.skipif(not thread_check_possible(), reason="needs oneMKL and 2 cores")
def test_its_gradients_do_not_depend_on_the_thread_count_in_reproducible_mode() -> None:
    """What ``harness run --reproducible`` promises: measured in a fresh process in
    oneMKL's strict mode, two layers of width 256 over a (32, 35) batch."""
    assert strict_mode_thread_dependence(TRANSFORMER, settings=ModelSettings(256, 2)) == []


@pytest.mark.parametrize("settings", [ModelSettings(32, 2), ModelSettings(32, 1, 0.1, True)],
                         ids=["default", "dropout-reproducible"])
def test_it_keeps_the_model_contract(settings: ModelSettings) -> None:
    assert check_model_spec(TRANSFORMER, settings=settings)


@pytest.mark.parametrize("sampler, window", [("random", 8), ("sequential", 128)])
def test_it_learns_under_the_harness_trainer(sampler: str, window: int) -> None:
    dataset = tiny_dataset()
    registry = load_registry(autoload=True)
    m = tiny_model(registry.model("transformer"), dataset=dataset)
    result = brief_training(model=m, sampler=registry.sampler(sampler), dataset=dataset)
    assert result.status == "ok", result.error
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert result.curve[-1].train_ppl < 0.75 * len(dataset.vocab)  # untrained: ~uniform
    assert math.isfinite(result.valid_ppl)
    # reset samplers: the context is exactly the minibatch's steps; sequential: the window
    assert m.trained_context == window
    text = result.generated[TINY_PREFIX]  # greedy, after training
    assert text.startswith(TINY_PREFIX) and len(text) == len(TINY_PREFIX) + 10
