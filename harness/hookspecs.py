"""Hook specifications: the whole surface a plugin can implement.

Each hook hands the plugin a ``register`` callback; the plugin calls it once per thing it
provides and returns nothing. The host attributes every registration to the plugin that
made it, so ``harness plugins`` can say who provides what.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from harness import PROJECT
from harness.contracts import ModelSpec, SamplerSpec

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model plugins: call ``register(ModelSpec(...))`` once per model."""


@hookspec
def register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    """Register minibatch samplers: call ``register(SamplerSpec(...))`` once per sampler."""
