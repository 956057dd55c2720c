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
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection

import torch

from harness.plugin.contracts import ModelSettings, ModelSpec
from harness.errors import ConfigError
from harness.plan.grid import describe_point
from harness.plan.plan import Plan
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
                check_model(registry.model(name), vocab_size=len(plan.dataset.vocab),
                            settings=recipe.model_settings(reproducible=plan.reproducible),
                            batch_size=recipe.batch_size, num_steps=recipe.num_steps)
            except ConfigError as error:
                raise ConfigError(f"--set {describe_point(point)}: {error}" if point
                                  else str(error)) from None


DRY_RUN_SECONDS = 60.0
"""The longest a child process may take to load the plugins and check the models."""


def check_models_isolated(plan: Plan, loader: Callable[[], Registry], *,
                          seconds: float = DRY_RUN_SECONDS) -> None:
    """:func:`check_models` in a fresh child process that loads the plugins through
    ``loader``; its refusal is raised here, and anything else (a crash, a hang past
    ``seconds``) is left to the run."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_check_in_child, args=(plan, loader, send),
                            name="harness-dry-run", daemon=True)
    try:
        child.start()
    except Exception:  # noqa: BLE001 - it cannot reach a child: the executor's check says so
        receive.close()
        return
    finally:
        send.close()
    try:
        refusal = receive.recv() if receive.poll(seconds) else None
    except (EOFError, OSError):  # the child died: nothing was checked
        refusal = None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    if refusal:
        raise ConfigError(refusal)


def _check_in_child(plan: Plan, loader: Callable[[], Registry], send: Connection) -> None:
    os.dup2(2, 1)  # a plugin's prints go to stderr, as in a worker
    try:
        check_models(plan, loader())
    except ConfigError as error:
        send.send(str(error))
        return
    send.send("")
