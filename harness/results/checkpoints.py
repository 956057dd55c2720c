"""Trained weights on disk: saved as a bare state_dict, loaded only with weights_only=True.

``--save-checkpoints`` writes ``checkpoints/<key>.pt`` (the ``state_dict``, tensors only)
for every combination that finished ``ok``. What rebuilds the model is JSON, never pickle:
the record names the model, its settings and the file; ``checkpoints/vocab.json`` holds the
vocabulary. ``torch.load(weights_only=True)`` accepts tensors and plain containers only, so
a file crafted to run code on load is refused with a
:class:`~harness.errors.CheckpointError` before anything in it runs, as is a corrupt one.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.plugin.contracts import ModelSettings
from harness.errors import CheckpointError, ConfigError
from harness.plan.grid import parse_value, resolve_name
from harness.names import safe_name
from harness.plugin.registry import Registry
from harness.results.schema import Record
from harness.results.store import RunStore, to_json, write_atomic
from harness.data.dataset import Dataset
from harness.data.text import Vocab

FOLDER = "checkpoints"
VOCAB = "vocab.json"


def encode_weights(model: nn.Module) -> bytes:
    """The model's ``state_dict`` on the CPU, as ``torch.save`` bytes (sent from a worker
    process to the driver, which writes them). Tensors are detached and moved; anything
    else a module keeps there (``get_extra_state``) is saved as it is."""
    buffer = io.BytesIO()
    state = {name: value.detach().cpu() if isinstance(value, torch.Tensor) else value
             for name, value in model.state_dict().items()}
    torch.save(state, buffer)
    return buffer.getvalue()


def save_vocab(store: RunStore, data: Dataset) -> None:
    """Write ``checkpoints/vocab.json``: the tokens in index order and how to join them."""
    payload = {"tokenizer": data.tokenizer, "separator": data.separator,
               "tokens": data.vocab.idx_to_token}
    write_atomic(store.path / FOLDER / VOCAB, to_json(payload, indent=1) + "\n")


def save_checkpoint(store: RunStore, key: str, weights: bytes) -> str:
    """Write one combination's weights; returns the path relative to the run directory."""
    relative = f"{FOLDER}/{safe_name(key)}.pt"
    write_atomic(store.path / relative, weights)
    return relative


@dataclass(frozen=True)
class Checkpoint:
    """A saved model: its record (model name, settings, sampler, seed) and its files."""

    record: Record
    path: Path
    vocab: Vocab
    tokenizer: str
    separator: str


def find_checkpoint(store: RunStore, model: str, *, sampler: str | None = None,
                    seed: int | None = None,
                    settings: Mapping[str, object] | None = None) -> Checkpoint:
    """The one checkpoint of ``model`` (narrowed by ``sampler``, ``seed`` and the ``--set``
    ``settings`` of a grid run, e.g. ``{"hidden": "16"}``, when a run holds several);
    CheckpointError naming the choices, each with its settings, otherwise."""
    wanted = _wanted(settings or {})
    saved = [r for r in store.records() if r.checkpoint]
    if not saved:
        raise CheckpointError(f"{store.path} has no checkpoints (run with --save-checkpoints)")
    found = [r for r in saved if r.model == model
             and sampler in (None, r.sampler) and seed in (None, r.seed)
             and all(r.settings.get(k, _ABSENT) == v for k, v in wanted.items())]
    if len(found) != 1:
        choices = ", ".join(dict.fromkeys(_choice(r) for r in saved))
        problem = "no checkpoint matches" if not found else "several checkpoints match"
        raise CheckpointError(f"{problem} model {model!r}"
                              + (f" sampler {sampler!r}" if sampler else "")
                              + (f" seed {seed}" if seed is not None else "")
                              + "".join(f" {k}={v}" for k, v in wanted.items())
                              + f" in {store.path}; choose from: {choices}")
    record = found[0]
    vocab, tokenizer, separator = _load_vocab(store.path / FOLDER / VOCAB)
    return Checkpoint(record, store.path / safe_relative(record.checkpoint), vocab,
                      tokenizer, separator)


def _wanted(settings: Mapping[str, object]) -> dict[str, object]:
    """``settings`` with recipe-field names (``hidden`` -> ``num_hiddens``) and typed values,
    parsed as ``harness run --set`` parses them; ConfigError for an unknown or repeated name."""
    wanted: dict[str, object] = {}
    for name, value in settings.items():
        field = resolve_name(name)
        if field in wanted:
            raise ConfigError(f"--set {field} is given twice")
        wanted[field] = parse_value(field, value)
    return wanted


_ABSENT = object()
"""What a record without a setting has for it: equal to no value."""


def _choice(record: Record) -> str:
    """The options that pick ``record``'s checkpoint, its grid point as ``--set`` options."""
    points = "".join(f" --set {name}={value}" for name, value in record.settings.items())
    return f"--model {record.model} --sampler {record.sampler} --seed {record.seed}" + points


def safe_relative(relative: str) -> Path:
    """A record's file reference, refused if it would leave the run directory."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts:
        raise CheckpointError(f"checkpoint path {relative!r} points outside the run directory")
    return path


def _load_vocab(path: Path) -> tuple[Vocab, str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tokens, tokenizer, separator = data["tokens"], data["tokenizer"], data["separator"]
        vocab = Vocab(tokens[1:])  # all counts equal: ties keep this order, <unk> comes first
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise CheckpointError(f"{path}: unreadable vocabulary ({type(error).__name__})") from None
    if vocab.idx_to_token != tokens:
        raise CheckpointError(f"{path}: not a vocabulary written by harness")
    return vocab, tokenizer, separator


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state_dict, read with ``weights_only=True``; CheckpointError if the file holds
    anything else (code to run on load included), is truncated, or is missing."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is noise here
            warnings.simplefilter("ignore", UserWarning)
            weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = next((line.strip() for line in str(error).splitlines()
                        if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors, which could run code "
            f"when loaded; harness loads weights only ({blocked or 'not a state_dict'})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint "
                              f"({type(error).__name__})") from None
    if not isinstance(weights, dict) or not all(isinstance(t, Tensor) for t in weights.values()):
        raise CheckpointError(f"{path}: not a state_dict (a mapping of names to tensors)")
    return weights


def load_model(checkpoint: Checkpoint, registry: Registry, device: torch.device) -> nn.Module:
    """Rebuild the checkpoint's model through its plugin and load the weights into it."""
    record = checkpoint.record
    weights = load_weights(checkpoint.path)
    settings = ModelSettings(**(record.model_settings or {}))
    model = registry.model(record.model).factory(len(checkpoint.vocab), settings, device)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: does not fit model {record.model!r} as "
                              f"its plugin builds it now ({first})") from None
    return model
