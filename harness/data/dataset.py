"""A task's corpus as token ids: fetched, verified, tokenised and split as d2l does.

How many tokens train and validate is the caller's to say (the plan reads it from the
recipe), so this stage needs no recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.corpus import locate, sha1_of
from harness.data.taskfile import Task
from harness.data.text import Vocab, read_lines, tokenize
from harness.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """A task's corpus, tokenised: the vocabulary and the train/validation token ids."""

    vocab: Vocab
    train: list[int]
    valid: list[int]
    path: Path
    sha1: str
    tokenizer: str

    @property
    def separator(self) -> str:
        """How generated tokens are joined: nothing for characters, a space for words."""
        return "" if self.tokenizer == "char" else " "

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha1": self.sha1, "vocab_size": len(self.vocab),
                "train_tokens": len(self.train), "valid_tokens": len(self.valid)}


def load_dataset(task: Task, *, max_tokens: int, valid_tokens: int,
                 corpus: Path | None = None, quiet: bool = False) -> Dataset:
    """Fetch, verify, preprocess and split the task's corpus as d2l does; a download is
    announced on stderr unless ``quiet``; ``corpus``: a copy of the task's corpus to use.

    The vocabulary covers the whole corpus (d2l builds it before truncating); the first
    ``max_tokens`` tokens train, the next ``valid_tokens`` validate. The task's
    ``[generate]`` prefixes are checked against the vocabulary here, before any training. Whether a
    minibatch fits is the plan's to check (:mod:`harness.plan.fits`).
    """
    path = locate(task.source, corpus, quiet)
    tokens = [t for line in tokenize(read_lines(path), task.tokenizer) for t in line]
    vocab = Vocab(tokens)
    check_prefixes(task, vocab)
    ids = vocab.encode(tokens)
    train = ids[:max_tokens]
    valid = ids[max_tokens: max_tokens + valid_tokens]
    return Dataset(vocab, train, valid, path, sha1_of(path), task.tokenizer)


def check_prefixes(task: Task, vocab: Vocab) -> None:
    """ConfigError if a prefix of the task has tokens the corpus never has: they would all
    be read as ``<unk>``. (Upper case, digits and punctuation never survive the
    preprocessing; a word may simply not occur.)"""
    for prefix in task.prefixes:
        unknown = vocab.missing(tokenize([prefix], task.tokenizer)[0])
        if unknown:
            shown = ", ".join(map(repr, unknown))
            why = "preprocessing keeps only lower-case letters and spaces" \
                if task.tokenizer == "char" else "no such word in the corpus"
            raise ConfigError(
                f"task {task.name}: [generate] prefix {prefix!r} has tokens the corpus "
                f"never has: {shown} ({why}); they would all be read as <unk>")
