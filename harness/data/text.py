"""d2l's text pipeline (§8.2): preprocessing, tokenisation and the vocabulary."""

from __future__ import annotations

import collections
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.errors import CorpusError

TOKENIZERS = ("char", "word")


def read_lines(path: Path) -> list[str]:
    r"""d2l's ``read_time_machine``: per line, non-letters -> one space, strip, lower-case.

    Lines break where d2l's ``open(path).readlines()`` breaks them (universal newlines:
    ``\n``, ``\r``, ``\r\n`` only), not at every ``str.splitlines`` boundary (form feed,
    ``\x85``, ``\u2028``...), whose split would drop the space d2l puts there. Invalid
    UTF-8, an empty file, or a file with no letters at all is a CorpusError naming the file.
    """
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not valid UTF-8 (byte {error.start})") from None
    except OSError as error:
        raise CorpusError(f"{path}: cannot read ({error.strerror})") from None
    if not raw.strip():
        raise CorpusError(f"{path}: the corpus is empty")
    lines = [preprocess(line).strip() for line in io.StringIO(raw, newline=None).readlines()]
    if not any(lines):
        raise CorpusError(f"{path}: the corpus has no letters left after preprocessing")
    return lines


READ_MODES = ("raw", "bytes")


def read_text(path: Path, mode: str) -> str:
    """The whole corpus as one string, one character per token, for models that see the
    text as published rather than d2l's letters: ``raw``, the UTF-8 text unchanged (case,
    punctuation, newlines as they are); ``bytes``, each byte one character (latin-1), for
    corpora scored per byte such as enwik8, or not in UTF-8. An unreadable or empty file,
    or invalid UTF-8 in ``raw``, is a CorpusError naming the file."""
    if mode not in READ_MODES:
        raise ValueError(f"unknown text mode {mode!r}; choose from: {', '.join(READ_MODES)}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{path}: cannot read ({error.strerror})") from None
    if not data:
        raise CorpusError(f"{path}: the corpus is empty")
    if mode == "bytes":
        return data.decode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not valid UTF-8 (byte {error.start}); "
                          'text = "bytes" reads it byte by byte') from None


def preprocess(text: str) -> str:
    """d2l's preprocessing of a line, but for the strip: runs of non-letters become one
    space, letters lower case. (:func:`read_lines` strips each line as d2l does; a prefix
    typed for ``harness generate`` keeps a trailing space.)"""
    return re.sub("[^A-Za-z]+", " ", text).lower()


def tokenize(lines: Iterable[str], token: str = "char") -> list[list[str]]:
    """d2l's ``tokenize``: each line as a list of characters or of words."""
    if token == "char":
        return [list(line) for line in lines]
    if token == "word":
        return [line.split() for line in lines]
    raise ValueError(f"unknown tokenizer {token!r}; choose from: {', '.join(TOKENIZERS)}")


class Vocab:
    """d2l's ``Vocab``: ``<unk>`` at index 0, then tokens by descending frequency (ties in
    order of first appearance). Unknown tokens map to 0."""

    def __init__(self, tokens: Iterable[str]) -> None:
        counter = collections.Counter(tokens)
        self.token_freqs = sorted(counter.items(), key=lambda item: item[1], reverse=True)
        self.idx_to_token = ["<unk>"] + [token for token, _ in self.token_freqs]
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def missing(self, tokens: Iterable[str]) -> list[str]:
        """The distinct ``tokens`` it does not hold (which :meth:`encode` reads as
        ``<unk>``), in order of first appearance."""
        return [t for t in dict.fromkeys(tokens) if t not in self.token_to_idx]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.token_to_idx.get(token, 0) for token in tokens]

    def decode(self, indices: Sequence[int], separator: str = "") -> str:
        return separator.join(self.idx_to_token[i] for i in indices)
