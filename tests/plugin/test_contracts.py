import dataclasses

import pytest
import torch

from harness.plugin.contracts import (OptimizerSettings, OptimizerSpec, ScheduleSettings,
                                      ScheduleSpec, detach_state, next_state)


class Model:
    def __init__(self):
        self.calls = 0

    def begin_state(self, batch_size, device):
        self.calls += 1
        return (torch.zeros(batch_size, 3), torch.zeros(batch_size, 3))


def test_detach_handles_none_tensor_and_nested_tuples() -> None:
    w = torch.ones(2, requires_grad=True)
    assert detach_state(None) is None
    assert not detach_state(w * 2).requires_grad
    h, (c, d) = detach_state((w * 2, (w * 3, w * 4)))
    assert not (h.requires_grad or c.requires_grad or d.requires_grad)
    assert torch.equal(c, torch.full((2,), 3.0))


def test_next_state_resets_or_carries() -> None:
    model = Model()
    w = torch.ones(2, 3, requires_grad=True)
    first = next_state(model, None, carries=True, batch_size=2, device=torch.device("cpu"))
    assert model.calls == 1 and first[0].shape == (2, 3)
    carried = next_state(model, (w * 5, w * 6), carries=True, batch_size=2,
                         device=torch.device("cpu"))
    assert model.calls == 1
    assert torch.equal(carried[0], torch.full((2, 3), 5.0)) and not carried[1].requires_grad
    reset = next_state(model, (w * 5, w * 6), carries=False, batch_size=2,
                       device=torch.device("cpu"))
    assert model.calls == 2 and torch.equal(reset[0], torch.zeros(2, 3))


def test_optimizer_and_schedule_contracts_have_their_documented_defaults() -> None:
    assert OptimizerSettings(lr=0.5) == OptimizerSettings(lr=0.5, weight_decay=0.0)
    spec = OptimizerSpec("o", lambda params, settings: None)
    assert spec.takes_weight_decay and spec.description == ""
    assert ScheduleSettings(total_steps=10) == ScheduleSettings(
        total_steps=10, warmup_steps=0, min_factor=0.0, step_every=0, gamma=0.1)
    assert ScheduleSpec("s", lambda step, settings: 1.0).description == ""
    for frozen in (OptimizerSettings(lr=1.0), spec, ScheduleSettings(total_steps=1)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            frozen.name = "changed"
