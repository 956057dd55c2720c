import pytest
import torch
from torch import nn
from torch.nn import functional as F

import harness_builtins.kernels
from harness.plugin.contracts import ModelSettings
from harness_builtins.rnn import RNNScratch, build_nnrnn, build_scratch

import d2l_seed

CPU = torch.device("cpu")


def seed_forward(X, state, params, vocab_size):
    """The seed's ``RNNModelScratch.__call__`` with its ``rnn`` (benchmarks/d2l_seed.py)."""
    return d2l_seed.rnn(F.one_hot(X.T, vocab_size).type(torch.float32), state, params)


def test_scratch_matches_seed_formulation_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = RNNScratch(28, 32, CPU)
    params = [p.detach().clone().requires_grad_(True)
              for p in (model.W_xh, model.W_hh, model.b_h, model.W_hq, model.b_q)]
    X = torch.randint(0, 28, (4, 6))
    Y = torch.randint(0, 28, (4, 6)).T.reshape(-1)
    H0 = torch.randn(4, 32) * 0.1

    ours, (h_ours,) = model(X, (H0,))
    ref, (h_ref,) = seed_forward(X, (H0,), params, 28)
    assert ours.shape == (6 * 4, 28)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(h_ours, h_ref)

    F.cross_entropy(ours, Y).backward()
    F.cross_entropy(ref, Y).backward()
    for mine, theirs in zip((model.W_xh, model.W_hh, model.b_h, model.W_hq, model.b_q), params):
        torch.testing.assert_close(mine.grad, theirs.grad)


def test_scratch_initialisation_is_d2ls() -> None:
    torch.manual_seed(0)
    model = build_scratch(28, ModelSettings(512), CPU)
    assert [n for n, _ in model.named_parameters()] == ["W_xh", "W_hh", "b_h", "W_hq", "b_q"]
    assert abs(model.W_hh.std().item() - 0.01) < 0.001
    assert model.b_h.abs().sum() == 0 and model.b_q.abs().sum() == 0
    assert model.begin_state(3, CPU)[0].shape == (3, 512)


def test_nnrnn_is_d2ls_concise_model() -> None:
    torch.manual_seed(0)
    model = build_nnrnn(28, ModelSettings(16), CPU)
    assert isinstance(model.rnn, nn.RNN) and model.rnn.input_size == 28
    state = model.begin_state(4, CPU)
    assert state.shape == (1, 4, 16)
    X = torch.randint(0, 28, (4, 5))
    out, new = model(X, state)
    assert out.shape == (5 * 4, 28) and new.shape == (1, 4, 16)
    # same as feeding the one-hot input to the layers by hand
    Y, _ = model.rnn(F.one_hot(X.T, 28).float(), state)
    torch.testing.assert_close(out, model.linear(Y.reshape(-1, 16)))



@pytest.mark.parametrize("reproducible", [False, True])
def test_scratch_takes_the_runs_mode_from_its_settings(reproducible: bool, monkeypatch) -> None:
    """--reproducible reaches the recurrence's choice of row blocks through the factory's
    settings, not through the environment."""
    seen, real = [], harness_builtins.kernels.batch_parts

    def recorded(*args, reproducible):
        seen.append(reproducible)
        return real(*args, reproducible=reproducible)

    monkeypatch.setattr(harness_builtins.kernels, "batch_parts", recorded)
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT" if not reproducible else "AUTO")
    model = build_scratch(28, ModelSettings(16, reproducible=reproducible), CPU)
    model(torch.randint(0, 28, (2, 3)), model.begin_state(2, CPU))
    assert seen == [reproducible]
