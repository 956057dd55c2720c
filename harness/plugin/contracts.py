"""The typed contracts between the harness and its plugins.

A *model plugin* provides a :class:`ModelSpec`: a name and a factory that builds an
``nn.Module`` obeying :class:`LanguageModel`. A *sampler plugin* provides a
:class:`SamplerSpec`: a function that cuts a token stream into ``(X, Y)`` minibatches, and
whether the recurrent state carries from one minibatch to the next.

State is whatever a model needs to continue a sequence: ``None`` for a model without
state, a tensor (RNN, GRU), or a tuple of tensors (LSTM). The trainer never inspects it;
it only calls :func:`detach_state` or asks the model for a fresh one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

State = Any
"""``None``, a tensor, or a (nested) tuple of tensors."""

Batches = Iterator[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class ModelSettings:
    """Hyper-parameters a model factory receives (the rest of the recipe is the trainer's)."""

    num_hiddens: int
    num_layers: int = 1
    dropout: float = 0.0
    reproducible: bool = False
    """The run asks for the same numbers on any number of threads (``--reproducible``): a
    model must then not choose its computation by torch's thread count."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The values of the model's own declared settings (:class:`ModelOption`), each one
    given or its default: ``options["order"]`` for an n-gram model."""


@dataclass(frozen=True)
class ModelOption:
    """A typed setting a model declares beyond :class:`ModelSettings`, given on the command
    line as ``--set name=value`` (and a grid axis as ``--set name=a,b``). A setting no chosen
    model declares is refused before any run starts."""

    name: str
    type: type
    """``int``, ``float``, ``str`` or ``bool``: what a ``--set`` value is parsed into."""
    default: Any
    description: str = ""


@runtime_checkable
class LanguageModel(Protocol):
    """What the trainer expects of a model (an ``nn.Module``).

    ``forward(X, state)`` takes token ids ``X`` of shape ``(batch, steps)`` and returns
    logits of shape ``(steps * batch, vocab)`` in time-major order (d2l's convention: row
    ``t * batch + b`` predicts ``Y[b, t]``) together with the new state.
    """

    def begin_state(self, batch_size: int, device: torch.device) -> State:
        """A fresh state for ``batch_size`` sequences (``None`` for stateless models)."""
        ...

    def __call__(self, X: Tensor, state: State) -> tuple[Tensor, State]: ...


ModelFactory = Callable[[int, ModelSettings, torch.device], nn.Module]
"""``factory(vocab_size, settings, device) -> model``.

Settings the model does not support are refused with ``ValueError``, by the factory or by
``forward``. Before any run starts, the factory is called on the ``meta`` device and one
minibatch run through the model there (:mod:`harness.plan.dryrun`), so the refusal is one
line before any training."""


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin provides."""

    name: str
    factory: ModelFactory
    description: str = ""
    options: tuple[ModelOption, ...] = ()
    """The model's own typed settings (for example a transformer's heads)."""
    trained_by: Literal["gradient", "counts"] = "gradient"
    """``gradient``: the trainer's optimizer trains it. ``counts``: a count model, which the
    trainer fits once on the training split by calling its ``fit(tokens)`` (a 1-D int64
    tensor) instead of taking gradient steps (:class:`CountModel`)."""


@runtime_checkable
class CountModel(LanguageModel, Protocol):
    """A model fitted by counting (an n-gram baseline): ``fit`` once, then scored like any
    :class:`LanguageModel`. Its ``forward`` returns log-probabilities as its logits."""

    def fit(self, tokens: Tensor) -> None:
        """Count the training split, ``tokens`` a 1-D int64 tensor of token ids."""
        ...


SampleFn = Callable[[Sequence[int], int, int, random.Random], Batches]
"""``batches(corpus, batch_size, num_steps, rng) -> iterator of (X, Y)``, each ``(B, T)``.

The trainer passes the corpus as a 1-D int64 tensor of token ids (a sequence of ints:
``torch.as_tensor(corpus)`` accepts it without a copy, and a list too)."""


@dataclass(frozen=True)
class SamplerSpec:
    """A minibatch sampler a plugin provides.

    ``carries_state`` is the sampler's promise that row ``b`` of one minibatch continues
    row ``b`` of the previous one, so the state may flow across (detached); otherwise the
    trainer starts every minibatch from a fresh state.
    """

    name: str
    batches: SampleFn
    carries_state: bool
    description: str = ""


def detach_state(state: State) -> State:
    """Cut the autograd history of a state of any shape (``None``, tensor, nested tuple)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"unsupported state type {type(state).__name__}")


def next_state(
    model: LanguageModel, state: State, *, carries: bool, batch_size: int, device: torch.device
) -> State:
    """The state to start the next minibatch from: the one rule every trainer path uses.

    A fresh state when there is none yet or the sampler does not carry state; otherwise the
    previous state detached, so gradients stay within one minibatch (truncated BPTT).
    """
    if state is None or not carries:
        return model.begin_state(batch_size, device)
    return detach_state(state)


@dataclass(frozen=True)
class OptimizerSettings:
    """What the trainer passes an optimizer factory. ``weight_decay`` means what the
    optimizer makes of it (coupled L2 for SGD and Adam, decoupled for AdamW); an optimizer
    that takes none says so with :attr:`OptimizerSpec.takes_weight_decay`."""

    lr: float
    weight_decay: float = 0.0


OptimizerFactory = Callable[[Sequence[tuple[str, nn.Parameter]], OptimizerSettings],
                            torch.optim.Optimizer]
"""``factory(named_parameters, settings) -> optimizer`` over the model's trainable
parameters, given with their names so an optimizer can treat matrices and vectors apart."""


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer a plugin provides. ``takes_weight_decay`` False: the harness refuses a
    nonzero weight decay for it before any run starts."""

    name: str
    factory: OptimizerFactory
    description: str = ""
    takes_weight_decay: bool = True


@dataclass(frozen=True)
class ScheduleSettings:
    """What a learning-rate schedule is given: the run's ``total_steps`` optimizer steps, a
    linear ``warmup_steps``, the factor a decay ends at (``min_factor``), and a step decay's
    period (``step_every``, 0: never) and ratio (``gamma``). A schedule reads what it uses."""

    total_steps: int
    warmup_steps: int = 0
    min_factor: float = 0.0
    step_every: int = 0
    gamma: float = 0.1


ScheduleFn = Callable[[int, ScheduleSettings], float]
"""``factor(step, settings) -> float``: the multiplier of the base learning rate for
optimizer step ``step`` (0-based: ``factor(0, ...)`` applies to the first step)."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule a plugin provides."""

    name: str
    factor: ScheduleFn
    description: str = ""
