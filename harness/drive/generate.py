"""Generating text from a run's saved weights (``harness generate``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import torch

from harness.data.references import short_repr
from harness.data.text import TOKENIZERS
from harness.errors import CheckpointError, ConfigError
from harness.machine.determinism import warm_up_math
from harness.machine.device import resolve_device
from harness.numbers import check_number, check_seed
from harness.plan.recipe import Recipe
from harness.plugin.contracts import ModelSettings
from harness.plugin.manager import load_registry
from harness.plugin.registry import Registry
from harness.results.checkpoints import FOLDER, VOCAB, Checkpoint, find_checkpoint, load_model
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
    _check_saved(checkpoint, Path(path))
    ids = encode_prefix(prefix, checkpoint.vocab, checkpoint.tokenizer)
    resolved = resolve_device(device)
    try:
        net = load_model(checkpoint, registry or load_registry(), resolved)
    except ValueError as error:  # the plugin refuses the settings, as in the dry run
        raise CheckpointError(f"model {checkpoint.record.model!r}: {error}") from None
    warm_up_math(resolved)
    generator = torch.Generator().manual_seed(draw_seed) if draw_seed is not None else None
    tokens = generate_tokens(net, ids, num_preds=length, device=resolved, temperature=temperature,
                             top_k=top_k, generator=generator)
    return checkpoint.vocab.decode(tokens, checkpoint.separator)


def _check_saved(checkpoint: Checkpoint, run: Path) -> None:
    """CheckpointError unless what rebuilds the model is as a run writes it, since it is
    read back from disk: the vocabulary's tokenizer, separator and tokens, and the record's
    ``model_settings`` (the recipe's checks of num_hiddens, num_layers and dropout)."""
    if checkpoint.tokenizer not in TOKENIZERS or not isinstance(checkpoint.separator, str) \
            or not all(isinstance(t, str) for t in checkpoint.vocab.idx_to_token):
        raise CheckpointError(f"{run / FOLDER / VOCAB}: not a vocabulary written by harness "
                              f"(tokenizer {short_repr(checkpoint.tokenizer)}, separator "
                              f"{short_repr(checkpoint.separator)})")
    stored = checkpoint.record.model_settings or {}
    known = {f.name for f in fields(ModelSettings)}
    try:
        if "num_hiddens" not in stored or not set(stored) <= known:
            raise ConfigError(f"need num_hiddens, may hold {', '.join(sorted(known))}, "
                              f"got {short_repr(checkpoint.record.model_settings)}")
        Recipe(**{k: v for k, v in stored.items()
                  if k in ("num_hiddens", "num_layers", "dropout")}).validate()
    except ConfigError as error:
        raise CheckpointError(f"the record of {checkpoint.record.label} has model_settings "
                              f"the harness does not write: {error}") from None
