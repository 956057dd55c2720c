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
from pathlib import Path
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
class Workload:
    """How the harness feeds a model, as its FLOPs per token may depend on it
    (:attr:`ModelSpec.flops_per_token`)."""

    vocab_size: int
    settings: ModelSettings
    num_steps: int
    """T: tokens per minibatch row, each one a trained (predicted) token."""
    carries_state: bool
    """The sampler carries the state from one minibatch to the next: a model whose state
    is a window of earlier tokens (a Transformer) then reads more tokens than it predicts."""


FlopsFn = Callable[[Workload], float]
"""``flops(workload) -> training FLOPs per trained token``, analytic and PaLM-style:
matrix products only (2 FLOPs per multiply-accumulate), training = 3 x forward, so 6 FLOPs
per weight a token's forward pass uses once; biases, activations, norms and row lookups
are left out. docs/reference/efficiency.md gives each built-in model's formula."""


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
    flops_per_token: FlopsFn | None = None
    """Its training FLOPs per trained token (:data:`FlopsFn`), from which the report gives
    the FLOP/s a run achieved and its share of the machine's peak; None: not declared (a
    count model, which multiplies no matrices), and those cells stay blank."""


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


# Observers (--track) ---------------------------------------------------------------------


@runtime_checkable
class Observer(Protocol):
    """What an observer plugin builds for one run: it hears the run's events, in the
    driver's main process, in this order:

    - ``run_started(run_dir, manifest)`` once: the run directory (a :class:`~pathlib.Path`)
      and its ``manifest.json`` as a dict (for ``--resume``, the manifest as it resumes);
    - for each combination, when its record lands in the run directory: its curve replayed,
      ``epoch(record, point)`` per row of d2l's task (one per epoch: ``epoch``,
      ``train_ppl``, ``tokens_per_sec``, ``valid_ppl``, ``threads``...) or
      ``evaluation(record, row)`` per row of a held-out task (one per validation:
      ``epoch``, ``step``, ``tokens``, ``seconds``, ``lr``, ``train_bpc``, ``valid_bpc``,
      ``valid_ppl``, ``eval_seconds``...), then ``record(record, curve)``; the rows are
      those of its curve (``curves/<key>.csv``);
    - ``run_finished(status)`` once, however the run ends (``complete``, ``partial``,
      ``interrupted``, ``aborted``).

    Combinations train in other processes (``--jobs``, Ray) that run no observer, so a
    combination's epoch events are replayed from its curve when its record arrives: all
    at once, after it finished, and never for a combination that is still training.
    ``record`` is that finished :class:`harness.results.schema.Record` (``key``,
    ``label``, ``model``, ``sampler``, ``seed``, ``settings``, ``status``, ``metrics``...),
    the same in its epoch events. Points and rows are dicts (a value None where it was
    not measured); every observer gets its own copies.

    Results never depend on an observer: a record is on disk before observers hear of it,
    and an observer that raises is warned about in one line and hears nothing more of the
    run. A method an observer lacks is skipped; subclass this protocol to inherit no-op
    methods and write only the ones needed.
    """

    def run_started(self, run_dir: Path, manifest: Mapping[str, Any]) -> None:
        """The run has a directory and its combinations are about to run."""

    def epoch(self, record: Any, point: Mapping[str, Any]) -> None:
        """One epoch of a combination of d2l's task (a row of its curve)."""

    def evaluation(self, record: Any, row: Mapping[str, Any]) -> None:
        """One validation of a combination of a held-out task (a row of its curve)."""

    def record(self, record: Any, curve: Sequence[Mapping[str, Any]]) -> None:
        """A combination finished (any status) and its record is stored."""

    def run_finished(self, status: str) -> None:
        """The run ended with ``status``: flush and close what the observer opened. Called
        once the run's status and report are written, with Ctrl-C ignored: keep it short."""


ObserverFactory = Callable[[], Observer]
"""``factory() -> observer``: called once per run that asks for it (``--track NAME``),
in the driver's process, when the run starts."""


@dataclass(frozen=True)
class ObserverSpec:
    """An observer a plugin provides, chosen per run with ``--track NAME``."""

    name: str
    factory: ObserverFactory
    description: str = ""
    requires: tuple[str, ...] = ()
    """Modules the observer imports that may not be installed (its optional extras): with
    one missing, ``--track NAME`` is refused before the run starts, saying :attr:`install`."""
    install: str = ""
    """How to install what :attr:`requires` names, e.g. ``pip install
    'rnn-harness[tensorboard]'`` (default: ``pip install`` and the module names)."""

    def missing(self) -> tuple[str, ...]:
        """The modules of :attr:`requires` that are not installed (found, not imported)."""
        import importlib.util

        def absent(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is None
            except (ImportError, ValueError):
                return True

        return tuple(m for m in self.requires if absent(m))
