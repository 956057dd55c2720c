"""Each (model, precision) of a plan run once for real on the run's device, before the run.

The meta-device dry run (:mod:`harness.plan.dryrun`) checks shapes; it cannot tell whether
the device can compute the model in the precision asked for. bf16 on a CPU without
avx512_bf16 is the common case: oneDNN has no bf16 LSTM there, so ``--precision bf16
--models lstm`` would fail in its first training step, after planning. :func:`probe_models`
builds each model of the plan at its real settings on the real device and takes one
forward and backward pass over a tiny minibatch (:data:`PROBE_ROWS` rows of at most
:data:`PROBE_STEPS` of the recipe's ``num_steps``; the meta dry run has checked the full
shape), under the trainer's autocast (:func:`harness.machine.device.precision_autocast`).

A failure refuses the run with one line naming model, precision, device and the reason,
when the device or precision is to blame: the same model passes the probe in fp32 on the
CPU. A model that fails there too is broken in itself, and that is left to the run, which
records it as a failed combination and goes on with the others. So fp32 on the CPU, the
reference, is not probed (nothing could be refused: a d2l run in fp32 on a CPU costs no
probe), and neither are count models (fitted, not trained).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch.nn import functional as F

from harness.errors import ConfigError
from harness.machine.device import device_name, precision_autocast, synchronize
from harness.machine.provenance import bf16_support_text, cpu_flags, native_bf16
from harness.plan.plan import Plan
from harness.plugin.contracts import ModelSettings, ModelSpec, next_state
from harness.plugin.registry import Registry

PROBE_ROWS = 2
"""Rows of the probe's minibatch: more than one, so no batch dimension of 1 is squeezed."""
PROBE_STEPS = 8
"""The most time steps the probe takes: a recurrent backward pass costs per step (a CPU
``nn.GRU``'s most), and whether a precision runs does not depend on the length."""

REFERENCE_PRECISION = "fp32"
CPU = torch.device("cpu")


def probe_model(spec: ModelSpec, *, vocab_size: int, settings: ModelSettings,
                precision: str, device: torch.device, num_steps: int,
                rows: int = PROBE_ROWS) -> None:
    """One forward and backward pass of ``spec``'s model, built with ``settings`` on
    ``device``, over ``rows`` x ``num_steps`` token ids in ``precision``, as a training
    step takes it (its state fresh, the loss in fp32). Raises what the model or torch
    raises; torch's random state is left as it was."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        model = spec.factory(vocab_size, settings, device)
        model.train()
        tokens = torch.arange(rows * (num_steps + 1), device=device) % vocab_size
        tokens = tokens.reshape(rows, num_steps + 1)
        X, Y = tokens[:, :-1].contiguous(), tokens[:, 1:]  # as a sampler gives them
        state = next_state(model, None, carries=False, batch_size=rows, device=device)
        with precision_autocast(device, precision):
            logits, _ = model(X, state)
        loss = F.cross_entropy(logits.float(), Y.T.reshape(-1))
        if loss.requires_grad:
            loss.backward()
        synchronize(device)  # a GPU's error surfaces here, not in the first real step


def needs_probe(*, precision: str, device: torch.device) -> bool:
    """Whether a model in ``precision`` on ``device`` is probed: all but the reference,
    fp32 on the CPU, where a failure can only be the model's own."""
    return not (precision == REFERENCE_PRECISION and device.type == CPU.type)


def check_precision(spec: ModelSpec, *, vocab_size: int, settings: ModelSettings,
                    precision: str, device: torch.device, num_steps: int) -> None:
    """:func:`probe_model`; ConfigError when it fails on ``device`` in ``precision`` but
    passes in fp32 on the CPU (the device or precision is to blame, not the model)."""
    try:
        probe_model(spec, vocab_size=vocab_size, settings=settings, precision=precision,
                    device=device, num_steps=num_steps)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - judged below
        if not needs_probe(precision=precision, device=device):
            return  # nothing to set it beside: the model's own failure, the run's to record
        try:
            probe_model(spec, vocab_size=vocab_size, settings=settings,
                        precision=REFERENCE_PRECISION, device=CPU, num_steps=num_steps)
        except (Exception, SystemExit):  # noqa: BLE001 - broken everywhere: left to the run
            return
        raise ConfigError(refusal(spec.name, precision=precision, device=device,
                                  error=error)) from None


def refusal(model: str, *, precision: str, device: torch.device, error: BaseException) -> str:
    """The one-line refusal: model, precision, device, the error's first line and, for
    bf16 on a CPU, what the CPU offers for it."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    text = (f"model {model!r} cannot train in {precision} on {device} "
            f"({device_name(device)}): {reason}")
    if precision == "bf16" and device.type == "cpu":
        text += f" ({bf16_support_text(flags=cpu_flags())})"
    return text


def probe_models(plan: Plan, registry: Registry) -> None:
    """:func:`check_precision` for each trained model of ``plan`` in each precision (and
    model settings) its ``--set`` points give it, once each, where :func:`needs_probe`."""
    probed: list[tuple[str, str, ModelSettings]] = []
    for point in dict.fromkeys(c.settings for c in plan.combinations):
        recipe = plan.recipe_at(point)
        if not needs_probe(precision=recipe.precision, device=plan.device):
            continue
        for name in dict.fromkeys(c.model for c in plan.combinations if c.settings == point):
            spec = registry.model(name)
            if spec.trained_by != "gradient":
                continue
            settings = recipe.model_settings(reproducible=plan.reproducible,
                                             declared=spec.options)
            if (name, recipe.precision, settings) in probed:
                continue
            probed.append((name, recipe.precision, settings))
            check_precision(spec, vocab_size=len(plan.dataset.vocab), settings=settings,
                            precision=recipe.precision, device=plan.device,
                            num_steps=min(recipe.num_steps, PROBE_STEPS))


def emulated_bf16(plan: Plan, *, environ: Any = os.environ) -> str | None:
    """The warning for a plan that trains in bf16 on a CPU that has no bf16 instructions
    (no avx512_bf16 and no amx_bf16, or ``ONEDNN_MAX_CPU_ISA`` keeping oneDNN off them),
    where bf16 is emulated; None otherwise, or where the CPU's flags are unknown."""
    if plan.device.type != "cpu":
        return None
    if not any(plan.recipe_at(p).precision == "bf16"
               for p in dict.fromkeys(c.settings for c in plan.combinations)):
        return None
    flags = cpu_flags()
    if native_bf16(flags=flags, environ=environ) is not False:
        return None
    return (f"bf16 is emulated on this CPU ({bf16_support_text(flags=flags, environ=environ)})"
            " and is usually several times slower than fp32 there")


def warn_emulated_bf16(plan: Plan) -> None:
    """Warn (one line on the command line) when :func:`emulated_bf16` says so."""
    message = emulated_bf16(plan)
    if message:
        warnings.warn(message, stacklevel=3)
