"""The training recipe: every number a run is trained with, and its validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from harness.plugin.contracts import ModelSettings
from harness.errors import ConfigError
from harness.numbers import check_number

PRECISIONS = ("fp32", "bf16")


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

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown recipe setting(s): {', '.join(unknown)}; "
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
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")

    def model_settings(self, *, reproducible: bool = False) -> ModelSettings:
        """What the model factory receives; ``reproducible``: the run's determinism mode."""
        return ModelSettings(self.num_hiddens, self.num_layers, self.dropout, reproducible)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def min_train_tokens(self) -> int:
        """Tokens needed for one minibatch under any sampler offset (d2l draws the offset
        from ``[0, num_steps]``, and the targets are shifted by one)."""
        return self.batch_size * self.num_steps + self.num_steps + 1

