"""Model settings checked before any training: each model built, and run once, on torch's
``meta`` device.

A model plugin refuses settings by raising ``ValueError`` from its factory or forward
pass. :func:`check_models` builds every model of a plan, with each of its settings, on the
``meta`` device (shapes, no data) and passes it one minibatch: cheap, so a refusal stops
the run with one line before a run directory exists, not after other combinations trained.

A serial run checks in this process. ``--jobs`` and Ray never run plugin code in the
driver, so for them the check runs in a child process with a time limit
(:func:`check_models_isolated`); a child that dies or times out has checked nothing.
Anything else a plugin raises here (no meta kernel, an ``.item()``) is left to the run.

:func:`check_plan` adds the precision probe (:mod:`harness.plan.probe`): one real forward
and backward per (model, precision) on the run's device; the child process runs it too, so
plugin code stays out of the driver's process for it as well.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable

import torch

from harness.plugin.contracts import ModelSettings, ModelSpec
from harness.errors import ConfigError
from harness.plan.grid import describe_point
from harness.plan.plan import Plan
from harness.plan.probe import probe_models
from harness.plugin.registry import Registry

META = torch.device("meta")


def check_model(spec: ModelSpec, *, vocab_size: int, settings: ModelSettings,
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
        recipe = plan.recipe_at(point)
        for name in dict.fromkeys(c.model for c in plan.combinations if c.settings == point):
            try:
                spec = registry.model(name)
                check_model(spec, vocab_size=len(plan.dataset.vocab),
                            settings=recipe.model_settings(reproducible=plan.reproducible,
                                                           declared=spec.options),
                            batch_size=recipe.batch_size, num_steps=recipe.num_steps)
            except ConfigError as error:
                raise ConfigError(f"--set {describe_point(point)}: {error}" if point
                                  else str(error)) from None


def check_plan(plan: Plan, registry: Registry) -> None:
    """Every model of ``plan`` checked: :func:`check_models` on the meta device, then
    :func:`harness.plan.probe.probe_models` for real on the plan's device."""
    check_models(plan, registry)
    probe_models(plan, registry)


DRY_RUN_SECONDS = 60.0
"""The longest a child process may take to load the plugins and check the models (the
meta dry run and the precision probe)."""


def check_models_isolated(plan: Plan, loader: Callable[[], Registry], *,
                          seconds: float = DRY_RUN_SECONDS) -> None:
    """:func:`check_plan` in a fresh interpreter that loads the plugins through
    ``loader``; its refusal is raised here, and anything else (a crash, a hang past
    ``seconds``, a plan that cannot be sent) is left to the run. A ``python -c`` child,
    not a multiprocessing one, so the user's ``__main__`` is never run again."""
    try:
        payload = pickle.dumps((plan, loader))
    except Exception:  # noqa: BLE001 - it cannot reach a child: the executor's check says so
        return
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD], input=payload,
                              stdout=subprocess.PIPE, timeout=seconds, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        return
    refusal = done.stdout.decode("utf-8", errors="replace").strip() \
        if done.returncode == REFUSED else ""
    if refusal:
        raise ConfigError(refusal)


REFUSED = 3
"""The child's exit code when a model refused its settings (the reason on stdout)."""

_CHILD = f"""
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it kills us)
import os, pickle, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # a plugin's prints go to stderr, as in a worker
from harness.errors import ConfigError
from harness.plan.dryrun import check_plan
plan, loader = pickle.loads(sys.stdin.buffer.read())
try:
    check_plan(plan, loader())
except ConfigError as error:
    out.write(str(error))
    out.close()
    sys.exit({REFUSED})
"""
