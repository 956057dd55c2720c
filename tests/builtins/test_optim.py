"""The built-in optimizers and schedules, and harness.train.optimizers that builds them."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.errors import ConfigError
from harness.plugin.contracts import (ModelSettings, OptimizerSettings, OptimizerSpec,
                                      ScheduleSettings)
from harness.plugin.manager import load_registry
from harness.train.optimizers import build_optimizer, build_scheduler, check_optimizer_settings
from harness_builtins.optim import OPTIMIZERS, SCHEDULES, build_sgd, constant, cosine, step_decay
from harness_builtins.rnn import build_scratch

CPU = torch.device("cpu")
V = 12


def scratch(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_scratch(V, ModelSettings(num_hiddens=8), CPU)


class Small(nn.Module):
    """A matrix, a bias, a norm scale and a frozen matrix."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.frozen = nn.Parameter(torch.ones(2, 2), requires_grad=False)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> None:
    generator = torch.Generator().manual_seed(1)
    state = None
    for _ in range(steps):
        X, Y = torch.randint(0, V, (2, 3, 5), generator=generator)
        state = model.begin_state(3, CPU)
        logits, state = model(X, state)
        loss = F.cross_entropy(logits, Y.T.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def zero_grad_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One step with every gradient zero (not None: an optimizer skips a missing one)."""
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()


def test_builtins_are_in_the_registry() -> None:
    registry = load_registry(autoload=False)
    assert registry.optimizers.names() == ["adam", "adamw", "sgd"]
    assert registry.schedules.names() == ["constant", "cosine", "step"]
    assert registry.optimizer("adamw") is OPTIMIZERS[2]
    assert registry.schedule("cosine") is SCHEDULES[1]
    assert registry.optimizers.providers["sgd"].plugin == "harness_builtins.optim"
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'; choose from: adam, adamw"):
        registry.optimizer("lion")


def test_sgd_without_weight_decay_is_bit_identical_to_the_trainers_sgd() -> None:
    ours, theirs = scratch(), scratch()
    train_steps(ours, build_optimizer(ours, spec=load_registry(autoload=False).optimizer("sgd"),
                                      lr=0.7, weight_decay=0.0))
    train_steps(theirs, torch.optim.SGD(theirs.parameters(), lr=0.7))
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(ours.W_hq, scratch().W_hq)  # it did train


def test_sgd_without_weight_decay_is_one_plain_group() -> None:
    model = scratch()
    optimizer = build_sgd(list(model.named_parameters()), OptimizerSettings(lr=0.5))
    reference = torch.optim.SGD(model.parameters(), lr=0.5)
    assert optimizer.state_dict()["param_groups"] == reference.state_dict()["param_groups"]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_shrinks_matrices_by_exactly_lr_times_wd_and_not_vectors(name) -> None:
    model, lr, wd = Small(), 0.1, 0.5
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, spec=load_registry(autoload=False).optimizer(name),
                                lr=lr, weight_decay=wd)
    zero_grad_step(model, optimizer)
    if name == "sgd":  # coupled: p -= lr * (0 + wd * p), i.e. p * (1 - lr * wd) up to rounding
        torch.testing.assert_close(model.linear.weight, before["linear.weight"] * (1 - lr * wd),
                                   rtol=1e-6, atol=0)
    else:  # decoupled: p *= 1 - lr * wd, then a zero Adam update
        assert torch.equal(model.linear.weight, before["linear.weight"].mul(1 - lr * wd))
    assert not torch.equal(model.linear.weight, before["linear.weight"])
    for vector in ("linear.bias", "norm.weight", "norm.bias"):
        assert torch.equal(dict(model.named_parameters())[vector], before[vector]), vector


def test_adamw_without_weight_decay_does_not_use_torchs_default_decay() -> None:
    model = Small()
    before = model.linear.weight.detach().clone()
    zero_grad_step(model, build_optimizer(model, spec=load_registry(autoload=False)
                                          .optimizer("adamw"), lr=0.1, weight_decay=0.0))
    assert torch.equal(model.linear.weight, before)  # AdamW's own default would be 0.01


def test_adam_weight_decay_is_coupled_on_matrices_only() -> None:
    model, lr = Small(), 0.01
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    zero_grad_step(model, build_optimizer(model, spec=load_registry(autoload=False)
                                          .optimizer("adam"), lr=lr, weight_decay=0.5))
    # the L2 term is the whole gradient, so Adam's first step moves each entry by ~lr
    # towards 0 (not by lr * wd * p, as decoupled decay would)
    moved = before["linear.weight"] - model.linear.weight
    torch.testing.assert_close(moved, lr * before["linear.weight"].sign(), rtol=1e-4, atol=0)
    assert torch.equal(model.linear.bias, before["linear.bias"])
    assert torch.equal(model.norm.weight, before["norm.weight"])


def test_build_optimizer_passes_named_trainable_parameters() -> None:
    seen = []

    def factory(params, settings):
        seen.append(([n for n, _ in params], settings))
        return torch.optim.SGD([p for _, p in params], lr=settings.lr)

    build_optimizer(Small(), spec=OptimizerSpec("rec", factory), lr=0.3, weight_decay=0.2)
    assert seen == [(["linear.weight", "linear.bias", "norm.weight", "norm.bias"],
                     OptimizerSettings(lr=0.3, weight_decay=0.2))]


def test_nonzero_weight_decay_is_refused_for_an_optimizer_that_takes_none() -> None:
    spec = OptimizerSpec("plain", build_sgd, takes_weight_decay=False)
    check_optimizer_settings(spec, weight_decay=0.0)
    check_optimizer_settings(OPTIMIZERS[0], weight_decay=0.1)
    message = ("optimizer 'plain' takes no weight decay, but weight_decay=0.01 was given: "
               "set it to 0 or choose another optimizer")
    with pytest.raises(ConfigError) as info:
        check_optimizer_settings(spec, weight_decay=0.01)
    assert str(info.value) == message
    with pytest.raises(ConfigError, match="takes no weight decay"):
        build_optimizer(Small(), spec=spec, lr=0.1, weight_decay=0.01)


def test_constant_schedule() -> None:
    settings = ScheduleSettings(total_steps=10, warmup_steps=3)
    assert [constant(s, settings) for s in (0, 5, 50)] == [1.0, 1.0, 1.0]


def test_cosine_schedule_values() -> None:
    s = ScheduleSettings(total_steps=14, warmup_steps=4, min_factor=0.1)
    assert cosine(0, s) == 0.25  # the first warmup step: (0 + 1) / 4
    assert [cosine(k, s) for k in (1, 2, 3)] == [0.5, 0.75, 1.0]  # warmup ends at 1
    assert cosine(4, s) == 1.0  # the cosine starts from 1
    assert cosine(9, s) == pytest.approx(0.55)  # the midpoint: (1 + min_factor) / 2
    assert cosine(6, s) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert cosine(13, s) > 0.1
    assert cosine(14, s) == cosine(100, s) == 0.1  # from total_steps on: min_factor
    no_warmup = ScheduleSettings(total_steps=10)
    assert cosine(0, no_warmup) == 1.0 and cosine(5, no_warmup) == pytest.approx(0.5)
    assert cosine(10, no_warmup) == 0.0
    past = ScheduleSettings(total_steps=3, warmup_steps=5, min_factor=0.2)  # warmup too long
    assert [cosine(k, past) for k in range(5)] == [0.2, 0.4, 0.6, 0.2, 0.2]


def test_step_schedule_values() -> None:
    s = ScheduleSettings(total_steps=100, warmup_steps=2, step_every=3, gamma=0.5)
    assert [step_decay(k, s) for k in range(10)] == [
        0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    never = ScheduleSettings(total_steps=100, step_every=0, gamma=0.5)
    assert {step_decay(k, never) for k in range(0, 1000, 37)} == {1.0}


def test_lambda_lr_gives_each_optimizer_step_its_factor() -> None:
    registry = load_registry(autoload=False)
    model, lr = Small(), 0.2
    optimizer = build_optimizer(model, spec=registry.optimizer("adamw"), lr=lr, weight_decay=0.1)
    settings = ScheduleSettings(total_steps=6, warmup_steps=2)
    scheduler = build_scheduler(optimizer, spec=registry.schedule("cosine"), settings=settings)
    used = []
    for _ in range(8):
        used.append([group["lr"] for group in optimizer.param_groups])
        zero_grad_step(model, optimizer)
        scheduler.step()
    assert len(optimizer.param_groups) == 2  # matrices and vectors: both follow the schedule
    expected = [lr * cosine(k, settings) for k in range(8)]
    assert [round(a, 12) for a, _ in used] == [round(e, 12) for e in expected]
    assert [a for a, _ in used] == [b for _, b in used]
    assert used[0][0] == pytest.approx(0.1) and used[6][0] == used[7][0] == 0.0


def test_every_builtin_optimizer_trains_the_scratch_rnn() -> None:
    for spec in OPTIMIZERS:
        model = scratch()
        start = model.W_hq.detach().clone()
        train_steps(model, build_optimizer(model, spec=spec, lr=0.01, weight_decay=0.01))
        assert not torch.equal(model.W_hq, start), spec.name
