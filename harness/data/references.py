"""The training perplexities *Dive into Deep Learning* publishes, and when ours match them.

Source: d2l.ai (PyTorch edition), the results printed by ``train_ch8`` in §8.5 "Recurrent
Neural Networks from Scratch", §8.6 "Concise Implementation of RNNs", §9.1 "Gated
Recurrent Units", §9.2 "Long Short-Term Memory" and §9.3 "Deep Recurrent Neural
Networks". All were trained on the Time Machine, character level, first 10,000 tokens,
batch 32, 35 steps, 500 epochs, SGD, gradient clipping 1, no dropout. The book's code is
re-run whenever the book is built, so its printed number moves a little; a range covers
the values it has printed.

A row applies to one of ours only when every setting in :class:`Key` matches; the check
rounds ours to one decimal, as d2l prints it (``f"{ppl:.1f}"``), and tests it against the
range, ends included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


@dataclass(frozen=True)
class Key:
    """What determines a published number: task, corpus, model, sampler and recipe."""

    model: str
    sampler: str
    num_hiddens: int
    num_layers: int = 1
    lr: float = 1.0
    task: str = "timemachine"
    corpus_sha1: str = TIMEMACHINE_SHA1
    epochs: int = 500
    batch_size: int = 32
    num_steps: int = 35
    max_tokens: int = 10_000
    clip: float = 1.0
    dropout: float = 0.0


@dataclass(frozen=True)
class Published:
    """A published training perplexity, ``low`` to ``high`` (equal for a single number)."""

    low: float
    high: float
    source: str

    def text(self) -> str:
        return f"{self.low:.1f}" if self.low == self.high else f"{self.low:.1f} to {self.high:.1f}"

    def contains(self, ours: float) -> bool:
        """Whether ``ours``, rounded to one decimal as d2l prints it, lies in the range."""
        return self.low <= rounded(ours) <= self.high


def rounded(value: float) -> float:
    """``value`` to one decimal, as d2l prints perplexity."""
    return float(f"{value:.1f}")


D2L: dict[Key, Published] = {
    Key("scratch", "sequential", 512): Published(1.0, 1.2, "d2l §8.5"),
    Key("scratch", "sequential-reset", 512): Published(1.3, 1.5, "d2l §8.5 (random iter)"),
    Key("nnrnn", "sequential", 256): Published(1.3, 1.4, "d2l §8.6"),
    Key("scratch-gru", "sequential", 256): Published(1.1, 1.1, "d2l §9.1"),
    Key("gru", "sequential", 256): Published(1.0, 1.1, "d2l §9.1"),
    Key("scratch-lstm", "sequential", 256): Published(1.3, 1.3, "d2l §9.2"),
    Key("lstm", "sequential", 256): Published(1.1, 1.2, "d2l §9.2"),
    Key("lstm", "sequential", 256, num_layers=2, lr=2.0): Published(1.0, 1.0, "d2l §9.3"),
}
"""d2l's published training perplexities, the one table of them in harness."""


def lookup(model: str, sampler: str, task: str, corpus_sha1: str | None,
           recipe: Mapping[str, Any]) -> Published | None:
    """The published number for this model, sampler, task, corpus and recipe, if any."""
    try:
        key = Key(model, sampler, int(recipe["num_hiddens"]), int(recipe["num_layers"]),
                  float(recipe["lr"]), task, corpus_sha1 or "", int(recipe["epochs"]),
                  int(recipe["batch_size"]), int(recipe["num_steps"]),
                  int(recipe["max_tokens"]), float(recipe["clip"]), float(recipe["dropout"]))
    except (KeyError, TypeError, ValueError):
        return None
    return D2L.get(key)
