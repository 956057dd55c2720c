"""The training recipe: every number a run is trained with, and its validation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from harness.plugin.contracts import ModelOption, ModelSettings
from harness.errors import ConfigError
from harness.numbers import check_number
from harness.data.references import shown_name

PRECISIONS = ("fp32", "bf16")
TARGET_METRICS = ("", "valid_bpc", "valid_ppl")
"""What ``--target`` may name: the metrics validation measures during training."""
BUDGETS = ("tokens", "steps", "seconds", "epochs")
"""The units of ``--budget``."""


@dataclass(frozen=True)
class Recipe:
    """Training settings. The defaults are the seed's (d2l §8.5, ``train_ch8``)."""

    epochs: int = 500
    batch_size: int = 32
    num_steps: int = 35
    num_hiddens: int = 512
    num_layers: int = 1
    dropout: float = 0.0
    lr: float = 1.0
    clip: float = 1.0
    max_tokens: int = 10_000
    """Training tokens: the first ``max_tokens`` of the corpus, as d2l's ``max_tokens``."""
    valid_tokens: int = 5_000
    """Validation tokens: the ones right after the training slice (0 turns validation off)."""
    eval_every: int = 50
    """Validate every this many epochs (and always after the last); 0: after the last only."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: matrix products in bfloat16 under autocast, fp32 master weights."""
    optimizer: str = "sgd"
    """An optimizer plugin's name: ``sgd`` (d2l's), ``adam``, ``adamw``, or a plugin's."""
    schedule: str = "constant"
    """A learning-rate schedule plugin's name: ``constant``, ``cosine``, ``step``."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up (``cosine``, ``step``)."""
    min_lr_factor: float = 0.1
    """``cosine``: the learning rate ends at this fraction of ``lr``."""
    step_every: int = 0
    """``step``: multiply the learning rate by ``step_gamma`` every this many steps."""
    step_gamma: float = 0.1
    budget_tokens: int = 0
    """Stop after this many training tokens (0: no such budget). With ``budget_steps``,
    ``budget_seconds`` and ``epochs``, training stops at the first budget reached."""
    budget_steps: int = 0
    budget_seconds: float = 0.0
    """Training seconds, validation excluded (0: no such budget)."""
    eval_tokens: int = 0
    """A task with ``[splits]``: validate on the whole validation split every this many
    training tokens (0: 10 times over the budget, or once per epoch without a token or
    step budget)."""
    target_metric: str = ""
    """``valid_bpc`` or ``valid_ppl``: record the tokens and seconds training needed to
    reach ``target_value`` (``--target``); empty: no target."""
    target_value: float = 0.0
    stop_at_target: bool = False
    model_options: tuple[tuple[str, Any], ...] = ()
    """Values of settings the models declare (``--set order=3``), as (name, value) pairs."""

    def __post_init__(self) -> None:
        # a manifest stores the pairs as JSON lists: the same recipe either way
        if not isinstance(self.model_options, tuple) or not all(
                isinstance(pair, tuple) for pair in self.model_options):
            given = self.model_options
            try:
                pairs = tuple(sorted((str(name), value) for name, value in (
                    given.items() if isinstance(given, Mapping) else given)))
            except (TypeError, ValueError):
                raise ConfigError(f"model_options must be (name, value) pairs, got "
                                  f"{self.model_options!r}"[:200]) from None
            object.__setattr__(self, "model_options", pairs)

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with the given fields replaced; ``None`` values are ignored. (A grid
        point, which may hold model settings, goes through :meth:`with_point`.)"""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown recipe setting(s): {', '.join(map(shown_name, unknown))}; "
                              f"choose from: {', '.join(sorted(known))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        """Raise a ConfigError naming the first setting that is out of range."""
        for name in ("epochs", "batch_size", "num_steps", "num_hiddens", "num_layers",
                     "max_tokens"):
            check_number(getattr(self, name), name=name, integer=True, minimum=1)
        for name in ("valid_tokens", "eval_every"):
            check_number(getattr(self, name), name=name, integer=True, minimum=0)
        for name in ("lr", "clip"):
            check_number(getattr(self, name), name=name, above=0)
        check_number(self.dropout, name="dropout", minimum=0, below=1)
        for name in ("warmup_steps", "step_every", "budget_tokens", "budget_steps",
                     "eval_tokens"):
            check_number(getattr(self, name), name=name, integer=True, minimum=0)
        for name in ("weight_decay", "budget_seconds", "target_value"):
            check_number(getattr(self, name), name=name, minimum=0)
        check_number(self.min_lr_factor, name="min_lr_factor", minimum=0, maximum=1)
        check_number(self.step_gamma, name="step_gamma", above=0, maximum=1)
        if self.target_metric not in TARGET_METRICS:
            raise ConfigError(f"a target must be on one of {', '.join(TARGET_METRICS[1:])}, "
                              f"got {self.target_metric!r}")
        if self.target_metric and not self.target_value > 0:
            raise ConfigError(f"the target {self.target_metric} needs a value above 0")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")

    def with_point(self, point: Iterable[tuple[str, Any]]) -> Recipe:
        """A copy changed by a grid point: recipe fields replaced, any other name a model
        setting added to :attr:`model_options`."""
        known = {f.name for f in fields(self)}
        point = list(point)
        options = dict(self.model_options)
        options.update((name, value) for name, value in point if name not in known)
        return replace(self, **{n: v for n, v in point if n in known},
                       model_options=tuple(sorted(options.items())))

    def model_settings(self, *, reproducible: bool = False,
                       declared: Iterable[ModelOption] = ()) -> ModelSettings:
        """What the model factory receives; ``reproducible``: the run's determinism mode;
        ``declared``: the model's own settings, each given a value here or its default."""
        given = dict(self.model_options)
        options = {o.name: given.get(o.name, o.default) for o in declared}
        return ModelSettings(self.num_hiddens, self.num_layers, self.dropout, reproducible,
                             options)

    def to_dict(self) -> dict[str, Any]:
        """Every field (the model settings as a mapping, and only when any are given)."""
        data = asdict(self)
        options = data.pop("model_options")
        return {**data, "model_options": dict(options)} if options else data

    def min_train_tokens(self) -> int:
        """Tokens needed for one minibatch under any sampler offset (d2l draws the offset
        from ``[0, num_steps]``, and the targets are shifted by one)."""
        return self.batch_size * self.num_steps + self.num_steps + 1

