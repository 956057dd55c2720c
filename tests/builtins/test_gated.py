import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.plugin.contracts import ModelSettings, SamplerSpec
from harness.plugin.manager import load_registry
from harness.data.taskfile import load_task
from harness.plan.fits import prepare, task_recipe
from harness.train.trainer import seed_everything, train
from harness_builtins.gated import GRULayer, LSTMLayer, build_scratch_gru, build_scratch_lstm
from harness_builtins.samplers import SAMPLERS

CPU = torch.device("cpu")
SAMPLER = {s.name: s for s in SAMPLERS}
GRU_NAMES = ["W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h"]
LSTM_NAMES = ["W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o",
              "W_xc", "W_hc", "b_c"]


# d2l §9.1 and §9.2, transcribed: get_params, the state and the recurrences, one-hot input,
# one step at a time. The deep tests stack the same cells by hand.

def d2l_get_params(vocab_size, num_hiddens, gates, device=CPU):
    num_inputs = num_outputs = vocab_size

    def normal(shape):
        return torch.randn(size=shape, device=device) * 0.01

    def three():
        return (normal((num_inputs, num_hiddens)),
                normal((num_hiddens, num_hiddens)),
                torch.zeros(num_hiddens, device=device))

    params = [p for _ in range(gates) for p in three()]
    params += [normal((num_hiddens, num_outputs)), torch.zeros(num_outputs, device=device)]
    return params


def d2l_gru_cell(X, H, params):
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h = params
    Z = torch.sigmoid((X @ W_xz) + (H @ W_hz) + b_z)
    R = torch.sigmoid((X @ W_xr) + (H @ W_hr) + b_r)
    H_tilda = torch.tanh((X @ W_xh) + ((R * H) @ W_hh) + b_h)
    H = Z * H + (1 - Z) * H_tilda
    return (H,)


def d2l_lstm_cell(X, H, C, params):
    [W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c] = params
    I = torch.sigmoid((X @ W_xi) + (H @ W_hi) + b_i)
    F_ = torch.sigmoid((X @ W_xf) + (H @ W_hf) + b_f)
    O = torch.sigmoid((X @ W_xo) + (H @ W_ho) + b_o)
    C_tilda = torch.tanh((X @ W_xc) + (H @ W_hc) + b_c)
    C = F_ * C + I * C_tilda
    H = O * torch.tanh(C)
    return H, C


def d2l_stack(X, state, layer_params, output_params, cell, vocab_size):
    """d2l's ``gru`` / ``lstm`` loop over ``RNNModelScratch``'s one-hot input, with the cell of
    every layer applied in turn at each step (one layer: d2l's code exactly)."""
    W_hq, b_q = output_params
    k = len(state) // len(layer_params)
    states = [tuple(state[i * k: (i + 1) * k]) for i in range(len(layer_params))]
    outputs = []
    for X_t in F.one_hot(X.T, vocab_size).type(torch.float32):
        for i, params in enumerate(layer_params):
            states[i] = cell(X_t, *states[i], params)
            X_t = states[i][0]
        outputs.append(X_t @ W_hq + b_q)
    return torch.cat(outputs, dim=0), tuple(s for layer in states for s in layer)


def clone_params(model, names):
    """The model's parameters as fresh leaves: per layer in d2l's order, then W_hq, b_q."""
    layers = [[getattr(layer, n).detach().clone().requires_grad_(True) for n in names]
              for layer in model.layers]
    output = [p.detach().clone().requires_grad_(True) for p in (model.W_hq, model.b_q)]
    return layers, output


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("build, names, cell", [
    (build_scratch_gru, GRU_NAMES, d2l_gru_cell),
    (build_scratch_lstm, LSTM_NAMES, d2l_lstm_cell),
], ids=["gru", "lstm"])
def test_scratch_cell_matches_d2l_equations_outputs_and_gradients(
        build, names, cell, num_layers) -> None:
    torch.manual_seed(0)
    V, H, B, T = 28, 24, 4, 6
    model = build(V, ModelSettings(H, num_layers), CPU)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    layers, output = clone_params(model, names)
    X = torch.randint(0, V, (B, T))
    Y = torch.randint(0, V, (B, T)).T.reshape(-1)
    state = tuple(torch.randn(B, H) * 0.5 for _ in model.begin_state(B, CPU))

    ours, ours_state = model(X, state)
    ref, ref_state = d2l_stack(X, state, layers, output, cell, V)
    assert ours.shape == (T * B, V) and len(ours_state) == len(state)
    torch.testing.assert_close(ours, ref)
    for mine, theirs in zip(ours_state, ref_state):
        torch.testing.assert_close(mine, theirs)

    F.cross_entropy(ours, Y).backward()
    F.cross_entropy(ref, Y).backward()
    for layer, ref_params in zip(model.layers, layers):
        for name, theirs in zip(names, ref_params):
            torch.testing.assert_close(getattr(layer, name).grad, theirs.grad, msg=name)
    torch.testing.assert_close(model.W_hq.grad, output[0].grad)
    torch.testing.assert_close(model.b_q.grad, output[1].grad)


@pytest.mark.parametrize("build, names, layer_cls, gates, state_size", [
    (build_scratch_gru, GRU_NAMES, GRULayer, 3, 1),    # state (H,)
    (build_scratch_lstm, LSTM_NAMES, LSTMLayer, 4, 2),  # state (H, C)
], ids=["gru", "lstm"])
def test_scratch_initialisation_and_state_are_d2ls(build, names, layer_cls, gates,
                                                   state_size) -> None:
    torch.manual_seed(0)
    model = build(28, ModelSettings(256), CPU)
    torch.manual_seed(0)
    expected = d2l_get_params(28, 256, gates)
    assert isinstance(model.layers[0], layer_cls) and len(model.layers) == 1
    assert [n for n, _ in model.layers[0].named_parameters()] == names
    ours = [getattr(model.layers[0], n) for n in names] + [model.W_hq, model.b_q]
    for mine, theirs in zip(ours, expected, strict=True):  # same draws, in d2l's order
        torch.testing.assert_close(mine.detach(), theirs)
    state = model.begin_state(3, CPU)
    assert isinstance(state, tuple) and len(state) == state_size
    assert all(s.shape == (3, 256) and not s.any() for s in state)


def test_deep_scratch_state_is_the_layers_states_in_turn() -> None:
    model = build_scratch_lstm(28, ModelSettings(16, num_layers=3), CPU)
    state = model.begin_state(2, CPU)
    assert len(state) == 6 and all(s.shape == (2, 16) for s in state)
    assert [layer.W_xi.shape[0] for layer in model.layers] == [28, 16, 16]


def test_scratch_dropout_acts_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_scratch_gru(28, ModelSettings(16, num_layers=2, dropout=0.5), CPU)
    X = torch.randint(0, 28, (3, 5))
    state = model.begin_state(3, CPU)
    model.eval()
    torch.testing.assert_close(model(X, state)[0], model(X, state)[0])
    model.train()
    assert not torch.equal(model(X, state)[0], model(X, state)[0])


@pytest.mark.parametrize("name, layer_cls", [("gru", nn.GRU), ("lstm", nn.LSTM)])
@pytest.mark.parametrize("num_layers, dropout", [(1, 0.0), (2, 0.3)])
def test_concise_models_wrap_torch_layers(name, layer_cls, num_layers, dropout) -> None:
    torch.manual_seed(0)
    model = load_registry(autoload=False).model(name).factory(
        28, ModelSettings(16, num_layers, dropout), CPU)
    assert isinstance(model.rnn, layer_cls) and model.rnn.input_size == 28
    assert model.rnn.num_layers == num_layers and model.rnn.dropout == dropout
    state = model.begin_state(4, CPU)
    shapes = [s.shape for s in (state if isinstance(state, tuple) else (state,))]
    assert shapes == [(num_layers, 4, 16)] * (2 if name == "lstm" else 1)
    X = torch.randint(0, 28, (4, 5))
    model.eval()
    out, _ = model(X, state)
    Y, _ = model.rnn(F.one_hot(X.T, 28).float(), state)  # one-hot input, as d2l's RNNModel
    torch.testing.assert_close(out, model.linear(Y.reshape(-1, 16)))


@pytest.fixture
def data(small_task: Path):
    task = load_task(str(small_task))
    return task, prepare(task, task_recipe(task))


@pytest.mark.parametrize("name, layers", [
    ("scratch-gru", 1), ("gru", 1), ("scratch-lstm", 1), ("lstm", 1), ("lstm", 2),
    ("nnrnn", 2),
])
def test_every_gated_model_learns(data, name, layers) -> None:
    task, dataset = data
    recipe = task_recipe(task).with_overrides(epochs=5, batch_size=8, num_steps=10,
                                              num_hiddens=32, num_layers=layers, lr=2.0)
    rng = seed_everything(0)
    model = load_registry(autoload=False).model(name).factory(
        len(dataset.vocab), recipe.model_settings(), CPU)
    result = train(model, SAMPLER["sequential"], data=dataset, recipe=recipe, device=CPU, rng=rng,
                   prefixes=("the time",), num_preds=5, quiet=True)
    assert result.status == "ok", result.error
    # an untrained model (weights ~ N(0, 0.01^2)) is near uniform: perplexity ~ vocab size
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert result.curve[-1].train_ppl < 0.75 * len(dataset.vocab)
    assert math.isfinite(result.valid_ppl)
    assert result.generated["the time"].startswith("the time")


class StateSpy(nn.Module):
    """Wraps a model and records every ``begin_state`` call and every state it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.begun, self.given, self.returned = model, 0, [], []

    def begin_state(self, batch_size, device):
        self.begun += 1
        return self.model.begin_state(batch_size, device)

    def forward(self, X, state):
        self.given.append(state)
        out, new = self.model(X, state)
        self.returned.append(new)
        return out, new


def _spy_training(data, sampler: SamplerSpec, layers: int, name: str) -> tuple[StateSpy, int]:
    task, _ = data
    recipe = task_recipe(task).with_overrides(epochs=1, num_layers=layers, max_tokens=200,
                                              valid_tokens=0)
    dataset = prepare(task, recipe)  # no validation set: only training calls the model
    model = load_registry(autoload=False).model(name).factory(
        len(dataset.vocab), recipe.model_settings(), CPU)
    spy = StateSpy(model)
    train(spy, sampler, data=dataset, recipe=recipe, device=CPU, rng=random.Random(0),
          prefixes=(), quiet=True)
    return spy, sum(1 for _ in sampler.batches(dataset.train, recipe.batch_size,
                                                recipe.num_steps, random.Random(0)))


@pytest.mark.parametrize("name, layers", [("scratch-lstm", 1), ("lstm", 2)])
def test_lstm_tuple_state_carries_detached_under_sequential(data, name, layers) -> None:
    spy, batches = _spy_training(data, SAMPLER["sequential"], layers, name)
    assert batches > 2 and len(spy.given) == batches
    assert spy.begun == 1  # one fresh state per epoch, then carried
    for given, previous in zip(spy.given[1:], spy.returned):
        assert isinstance(given, tuple) and len(given) == 2
        for g, p in zip(given, previous):
            assert p.grad_fn is not None  # the returned state has history ...
            assert g.grad_fn is None and not g.requires_grad  # ... the carried one none
            assert torch.equal(g, p) and g.any()  # same values: carried, not reset


@pytest.mark.parametrize("sampler", ["random", "sequential-reset"])
@pytest.mark.parametrize("name, layers", [("scratch-lstm", 1), ("lstm", 2)])
def test_lstm_tuple_state_is_reset_every_minibatch(data, sampler, name, layers) -> None:
    spy, batches = _spy_training(data, SAMPLER[sampler], layers, name)
    assert batches > 2 and spy.begun == len(spy.given) == batches
    for given in spy.given:
        assert isinstance(given, tuple) and len(given) == 2
        assert all(not s.any() and s.grad_fn is None for s in given)
