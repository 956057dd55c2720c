"""Model settings checked before any training: each model built, and run once, on torch's
``meta`` device.

A model plugin says "I cannot do that" by raising ``ValueError``, from its factory
(``scratch`` is one layer only) or from its forward pass (a Transformer asked for more
positions than it has). :func:`check_models` builds every model a plan will train, with
each of the model settings it will use, on the ``meta`` device, where tensors have shapes
but no data, and passes it one minibatch of token ids. That takes milliseconds, so such
errors stop the run with one line before a run directory exists, instead of failing each
combination after the ones before it have trained.

It runs plugin code, so it runs where the combinations would run: the serial executor
calls it in this process. ``--jobs`` and Ray never run plugin code in the driver (a plugin
that crashes or hangs must cost only its own combinations), so there a refusal is that
combination's ``failed`` record, at its first minibatch.

Anything else a plugin raises here (an op without a meta kernel, a ``.item()``, a factory
that ignores the device it is given) says nothing about the settings, so it is left for the
real run to meet.
"""

from __future__ import annotations

import torch

from harness.plugin.contracts import ModelSettings, ModelSpec
from harness.errors import ConfigError
from harness.plan.grid import describe_point
from harness.plan.plan import Plan
from harness.plugin.registry import Registry

META = torch.device("meta")


def check_model(spec: ModelSpec, vocab_size: int, settings: ModelSettings,
                batch_size: int, num_steps: int) -> None:
    """Raise :class:`ConfigError` if ``spec``'s factory or forward pass rejects ``settings``
    (with ``ValueError``) for minibatches of ``batch_size`` x ``num_steps`` token ids."""
    try:
        with torch.no_grad():
            model = spec.factory(vocab_size, settings, META)
            X = torch.zeros((batch_size, num_steps), dtype=torch.long, device=META)
            model(X, model.begin_state(batch_size, META))
    except ValueError as error:
        raise ConfigError(f"model {spec.name!r}: {error}") from None
    except Exception:  # noqa: BLE001 - not checkable without data; the run will tell
        return


def check_models(plan: Plan, registry: Registry) -> None:
    """:func:`check_model` for each model of ``plan`` at each of its ``--set`` points;
    the error names the point, if any."""
    for point in dict.fromkeys(c.settings for c in plan.combinations):
        recipe = plan.recipe.with_overrides(**dict(point))
        for name in dict.fromkeys(c.model for c in plan.combinations if c.settings == point):
            try:
                check_model(registry.model(name), len(plan.dataset.vocab),
                            recipe.model_settings(reproducible=plan.reproducible), recipe.batch_size, recipe.num_steps)
            except ConfigError as error:
                raise ConfigError(f"--set {describe_point(point)}: {error}" if point
                                  else str(error)) from None
