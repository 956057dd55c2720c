"""Text generation from a trained model: d2l's ``predict_ch8``, greedy or drawn.

The state is warmed up on the prefix, then each step feeds the previous output back in:
greedy (the default, as after training), or with a temperature > 0 drawn from
``softmax(logits / T)``, optionally among the ``top_k`` likeliest tokens only.
:func:`generate_tokens` works on ids, :func:`generate_text` on text (a task's prefixes,
tokenised unchanged); :func:`encode_prefix` preprocesses typed text as the corpus was.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.plugin.contracts import LanguageModel
from harness.errors import ConfigError
from harness.data.text import Vocab, preprocess, tokenize


def choose(logits: Tensor, *, temperature: float = 0.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> int:
    """The next token from one row of logits ``(V,)``: argmax when ``temperature`` is 0."""
    if temperature <= 0:
        return int(logits.argmax())
    # Shifted so the largest is 0, in float64: with a tiny temperature the others go to
    # -inf, never the largest to inf (softmax would give NaN); a float32 1e-300 would be 0.
    shifted = logits.double().cpu()
    scaled = (shifted - shifted.max()) / temperature
    if top_k is not None and top_k < scaled.numel():
        threshold = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    probs = torch.softmax(scaled, dim=0).float()  # draws in float32
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def generate_tokens(model: LanguageModel, prefix: list[int], *, num_preds: int,
                    device: torch.device, temperature: float = 0.0, top_k: int | None = None,
                    generator: torch.Generator | None = None) -> list[int]:
    """``prefix`` followed by ``num_preds`` generated token ids."""
    if not prefix:
        raise ConfigError("the prefix is empty: give at least one token to start from")
    was_training = model.training
    model.eval()
    state = model.begin_state(1, device)
    outputs = [prefix[0]]
    for token in prefix[1:]:  # warm-up: only the state matters
        _, state = model(torch.tensor([[outputs[-1]]], device=device), state)
        outputs.append(token)
    for _ in range(num_preds):
        logits, state = model(torch.tensor([[outputs[-1]]], device=device), state)  # (1, V)
        outputs.append(choose(logits[-1], temperature=temperature, top_k=top_k,
                              generator=generator))
    model.train(was_training)
    return outputs


def generate_text(model: LanguageModel, prefix: str, *, num_preds: int, vocab: Vocab,
                  tokenizer: str, separator: str, device: torch.device,
                  **drawing: object) -> str:
    """The text of ``prefix`` and ``num_preds`` generated tokens (``drawing``: the
    ``temperature``, ``top_k`` and ``generator`` of :func:`generate_tokens`)."""
    ids = vocab.encode(tokenize([prefix], tokenizer)[0])
    return vocab.decode(generate_tokens(model, ids, num_preds=num_preds, device=device,
                                        **drawing), separator)


def encode_prefix(prefix: str, vocab: Vocab, tokenizer: str) -> list[int]:
    """Token ids of text a person typed, preprocessed as :func:`harness.data.text.read_lines`
    preprocessed the corpus (runs of non-letters -> one space, lower case) but not stripped,
    so a trailing space stays. ConfigError naming the tokens the vocabulary lacks, rather
    than feeding the model ``<unk>``."""
    text = preprocess(prefix)
    tokens = tokenize([text], tokenizer)[0]
    unknown = vocab.missing(tokens)
    if unknown:
        what = "characters" if tokenizer == "char" else "words"
        raise ConfigError(f"the prefix has {what} the run's vocabulary lacks: "
                          f"{', '.join(map(repr, unknown))} (after lower-casing and turning "
                          f"non-letters into spaces: {text!r})")
    return vocab.encode(tokens)
