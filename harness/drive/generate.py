"""Generating text from a run's saved weights (``harness generate``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from harness.machine.determinism import warm_up_math
from harness.machine.device import resolve_device
from harness.numbers import check_number, check_seed
from harness.plugin.manager import load_registry
from harness.plugin.registry import Registry
from harness.results.checkpoints import find_checkpoint, load_model
from harness.results.store import RunStore
from harness.train.decoding import encode_prefix, generate_tokens


def generate(path: str | Path, *, model: str, prefix: str, sampler: str | None = None,
             seed: int | None = None, settings: Mapping[str, object] | None = None,
             length: int = 50, temperature: float = 0.0, top_k: int | None = None,
             draw_seed: int | None = None, device: str = "cpu",
             registry: Registry | None = None) -> str:
    """``prefix`` and ``length`` more tokens from a checkpoint of run ``path``
    (``--save-checkpoints``), greedy unless ``temperature`` > 0.

    ``sampler``, ``seed`` and ``settings`` (a ``--set`` point, ``{"hidden": 16}``) pick the
    checkpoint when the run saved several. ``prefix`` is preprocessed as the corpus was; a
    token the vocabulary lacks is a ConfigError, raised before the model loads.
    """
    check_number(length, name="length", integer=True, minimum=0)
    if top_k is not None:
        check_number(top_k, name="top-k", integer=True, minimum=1)
    check_number(temperature, name="temperature", minimum=0)
    if draw_seed is not None:
        draw_seed = check_seed(draw_seed, name="--draw-seed")
    checkpoint = find_checkpoint(RunStore.open(Path(path)), model, sampler=sampler, seed=seed,
                                 settings=settings)
    ids = encode_prefix(prefix, checkpoint.vocab, checkpoint.tokenizer)
    resolved = resolve_device(device)
    net = load_model(checkpoint, registry or load_registry(), resolved)
    warm_up_math(resolved)
    generator = torch.Generator().manual_seed(draw_seed) if draw_seed is not None else None
    tokens = generate_tokens(net, ids, num_preds=length, device=resolved, temperature=temperature,
                             top_k=top_k, generator=generator)
    return checkpoint.vocab.decode(tokens, checkpoint.separator)
