"""Hook specifications: the whole surface a plugin can implement.

Each hook hands the plugin a ``register`` callback; the plugin calls it once per thing it
provides and returns nothing. The host attributes every registration to the plugin that
made it, so ``harness plugins`` can say who provides what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the specs are light: importing them must not import torch
    from harness.plugin.contracts import (ModelSpec, ObserverSpec, OptimizerSpec,
                                          SamplerSpec, ScheduleSpec)

PROJECT = "rnn_harness"
"""The pluggy project name, which is also the entry-point group of installed plugins."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for hook implementations; plugins import it from the package root."""


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model plugins: call ``register(ModelSpec(...))`` once per model."""


@hookspec
def register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    """Register minibatch samplers: call ``register(SamplerSpec(...))`` once per sampler."""


@hookspec
def register_optimizers(register: Callable[[OptimizerSpec], None]) -> None:
    """Register optimizers: call ``register(OptimizerSpec(...))`` once per optimizer."""


@hookspec
def register_schedules(register: Callable[[ScheduleSpec], None]) -> None:
    """Register learning-rate schedules: call ``register(ScheduleSpec(...))`` once per
    schedule."""


@hookspec
def register_observers(register: Callable[[ObserverSpec], None]) -> None:
    """Register observers, which hear a run's events and export them (``--track NAME``):
    call ``register(ObserverSpec(...))`` once per observer."""
