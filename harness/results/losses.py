"""Per-token losses as text: what a record keeps of its test split for paired statistics.

Two models scored on the same test characters are compared token by token (paired
differences, block bootstrap), so a record keeps every test token's negative
log-likelihood: float32, zlib-compressed, base64, in stream order.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

PREFIX = "f32z:"


def encode_losses(nll: torch.Tensor) -> str:
    """``nll`` (1-D, nats) as ``f32z:<base64 of zlib of little-endian float32>``."""
    raw = nll.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes()
    return PREFIX + base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode_losses(text: str) -> np.ndarray:
    """The float64 array :func:`encode_losses` wrote; ValueError for anything else."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise ValueError("not an encoded loss array")
    try:
        raw = zlib.decompress(base64.b64decode(text[len(PREFIX):], validate=True))
    except (ValueError, zlib.error) as error:
        raise ValueError(f"not an encoded loss array ({error})") from None
    if len(raw) % 4:
        raise ValueError("not an encoded loss array (length)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)
