"""d2l's two minibatch samplers (§8.3), and the state-reset variant the seed actually ran.

- ``sequential``: ``seq_data_iter_sequential``. Row ``b`` of each minibatch continues row
  ``b`` of the previous one, so the hidden state carries across minibatches (detached).
- ``random``: ``seq_data_iter_random``. Subsequences start at shuffled positions, so the
  state is re-initialised for every minibatch.
- ``sequential-reset``: sequential partitioning, but with the state re-initialised every
  minibatch. This is what the seed's "random sampling" run does: it passes the sequential
  iterator to ``train_ch8(..., use_random_iter=True)``, and d2l's published perplexity
  for that row comes from it (``tasks/timemachine.toml``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from harness import hookimpl
from harness.plugin.contracts import Batches, SamplerSpec


def seq_data_iter_random(
    corpus: Sequence[int], batch_size: int, num_steps: int, rng: random.Random
) -> Batches:
    """d2l's random sampling: non-overlapping subsequences from a random offset, shuffled.

    The same draws from ``rng`` as d2l's code, and the same batches; the subsequences are
    gathered with one tensor index per minibatch instead of Python list slices.
    """
    corpus = torch.as_tensor(corpus)[rng.randint(0, num_steps - 1):]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    rng.shuffle(initial_indices)
    num_batches = num_subseqs // batch_size
    steps = torch.arange(num_steps)
    for i in range(0, batch_size * num_batches, batch_size):
        index = torch.tensor(initial_indices[i: i + batch_size]).unsqueeze(1) + steps  # (B, T)
        yield corpus[index], corpus[index + 1]


def seq_data_iter_sequential(
    corpus: Sequence[int], batch_size: int, num_steps: int, rng: random.Random
) -> Batches:
    """d2l's sequential partitioning: ``batch_size`` contiguous streams from a random offset."""
    corpus = torch.as_tensor(corpus)
    offset = rng.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset: offset + num_tokens].reshape(batch_size, -1)
    Ys = corpus[offset + 1: offset + 1 + num_tokens].reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    for i in range(0, num_steps * num_batches, num_steps):
        yield Xs[:, i: i + num_steps], Ys[:, i: i + num_steps]


SAMPLERS = (
    SamplerSpec("sequential", seq_data_iter_sequential, carries_state=True,
                description="d2l sequential partitioning; state carries across minibatches"),
    SamplerSpec("random", seq_data_iter_random, carries_state=False,
                description="d2l random sampling; state reset every minibatch"),
    SamplerSpec("sequential-reset", seq_data_iter_sequential, carries_state=False,
                description="sequential batches, state reset every minibatch (the seed's "
                            "'random' run)"),
)


@hookimpl
def register_samplers(register: Callable[[SamplerSpec], None]) -> None:
    for spec in SAMPLERS:
        register(spec)
