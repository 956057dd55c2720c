"""The built-in models' declared training FLOPs per token, checked against counts made
without the formulas: the weight matrices a model holds (each used once per token by a
recurrent model) and torch's FLOP counter over a real forward and backward pass."""

import pickle

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from harness import load_registry
from harness.plugin.contracts import ModelSettings, Workload

REGISTRY = load_registry(autoload=False)
RECURRENT = ["scratch", "nnrnn", "scratch-gru", "scratch-lstm", "gru", "lstm"]
GATES = {"scratch": 1, "nnrnn": 1, "scratch-gru": 3, "gru": 3, "scratch-lstm": 4, "lstm": 4}
V, H, B, T = 28, 16, 4, 5
CPU = torch.device("cpu")


def cases() -> list[tuple[str, int]]:
    return [(name, layers) for name in RECURRENT for layers in (1, 2)
            if not (name == "scratch" and layers == 2)]  # d2l's scratch RNN has one layer


def declared(name: str, settings: ModelSettings, carries: bool = True) -> float:
    return REGISTRY.model(name).flops_per_token(Workload(V, settings, T, carries))


@pytest.mark.parametrize("name, layers", cases())
def test_a_recurrent_model_declares_6_flops_per_weight_of_its_matrices(name: str,
                                                                       layers: int) -> None:
    """Every weight matrix of a recurrent model (one-hot input, recurrence, output) is used
    once per token, so its MACs per token are the matrices' sizes; biases are not counted."""
    settings = ModelSettings(H, layers)
    model = REGISTRY.model(name).factory(V, settings, CPU)
    macs = sum(p.numel() for p in model.parameters() if p.dim() == 2)
    assert declared(name, settings) == 6 * macs
    # and by the formula of docs/reference/efficiency.md
    G = GATES[name]
    assert declared(name, settings) == 6 * (G * (V * H + H * H)
                                            + (layers - 1) * G * 2 * H * H + H * V)


@pytest.mark.parametrize("name", RECURRENT)
def test_a_recurrent_model_s_flops_do_not_depend_on_the_steps_or_the_state(name: str) -> None:
    settings = ModelSettings(H)
    spec = REGISTRY.model(name)
    assert spec.flops_per_token(Workload(V, settings, 1, False)) \
        == spec.flops_per_token(Workload(V, settings, 35, True))


@pytest.mark.parametrize("name", ["scratch-gru", "scratch-lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_s_flop_counter_agrees_except_for_the_one_hot_product(name: str,
                                                                    layers: int) -> None:
    """torch's counter sees every product the scratch gated models run (forward and their
    hand-written backward), but not the one-hot input product, which runs as a row lookup:
    the declaration counts it as d2l's dense (V, G*H) product."""
    settings = ModelSettings(H, layers)
    torch.manual_seed(0)
    model = REGISTRY.model(name).factory(V, settings, CPU)
    X, Y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(X, model.begin_state(B, CPU))
        F.cross_entropy(logits, Y.T.reshape(-1)).backward()
    one_hot = 6 * V * GATES[name] * H
    assert counter.get_total_flops() + one_hot * B * T == declared(name, settings) * B * T


def test_the_count_model_declares_none_and_every_gradient_model_one() -> None:
    for name in REGISTRY.models.names():
        spec = REGISTRY.model(name)
        assert (spec.flops_per_token is None) == (spec.trained_by == "counts"), name


@pytest.mark.parametrize("name", RECURRENT)
def test_a_declaration_travels_with_its_spec_to_worker_processes(name: str) -> None:
    flops = pickle.loads(pickle.dumps(REGISTRY.model(name).flops_per_token))
    assert flops(Workload(V, ModelSettings(H), T, True)) == declared(name, ModelSettings(H))
