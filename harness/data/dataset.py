"""A task's corpus as token ids: fetched, verified, tokenised and split.

A task with ``[splits]`` is split at its own fixed boundaries into train, valid and test;
a task without them (d2l's) trains on the first ``max_tokens`` and validates on the next
``valid_tokens``, which the caller gives (the plan reads them from the recipe), so this
stage needs no recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.corpus import locate, sha1_of, sha256_of
from harness.data.taskfile import Task
from harness.data.text import Vocab, read_lines, read_text, tokenize
from harness.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """A task's corpus, tokenised: the vocabulary and the train/valid/test token ids."""

    vocab: Vocab
    train: list[int]
    valid: list[int]
    path: Path
    sha1: str
    tokenizer: str
    test: list[int] = field(default_factory=list)
    """The test part (a task with ``[splits]``): scored once, at the end of training."""
    bounds: tuple[int, int, int] | None = None
    """Where valid and test start and test ends in the token stream (a task with
    ``[splits]``); None for d2l's slices."""
    sha256: str | None = None
    """The corpus file's sha256 (the hash loaders publish), recorded beside its sha1."""

    @property
    def separator(self) -> str:
        """How generated tokens are joined: nothing for characters, a space for words."""
        return "" if self.tokenizer == "char" else " "

    def info(self) -> dict[str, Any]:
        info = {"path": str(self.path), "sha1": self.sha1, "vocab_size": len(self.vocab),
                "train_tokens": len(self.train), "valid_tokens": len(self.valid)}
        if self.bounds is not None:
            info["test_tokens"] = len(self.test)
            info["bounds"] = list(self.bounds)
        if self.sha256 is not None:
            info["sha256"] = self.sha256
        return info


def load_dataset(task: Task, *, max_tokens: int, valid_tokens: int,
                 corpus: Path | None = None, quiet: bool = False) -> Dataset:
    """Fetch, verify, preprocess and split the task's corpus as d2l does; a download is
    announced on stderr unless ``quiet``; ``corpus``: a copy of the task's corpus to use.

    The vocabulary covers the whole corpus (d2l builds it before truncating). With the
    task's ``[splits]``, its fixed boundaries decide the parts (``max_tokens`` and
    ``valid_tokens`` are not used); without, the first ``max_tokens`` tokens train, the
    next ``valid_tokens`` validate. The task's
    ``[generate]`` prefixes are checked against the vocabulary here, before any training. Whether a
    minibatch fits is the plan's to check (:mod:`harness.plan.fits`).
    """
    path = locate(task.source, corpus, quiet)
    sha256 = sha256_of(path)
    if task.text == "d2l":
        tokens = [t for line in tokenize(read_lines(path), task.tokenizer) for t in line]
    else:
        tokens = list(read_text(path, task.text))
    vocab = Vocab(tokens)
    check_prefixes(task, vocab)
    ids = vocab.encode(tokens)
    if task.splits is None:
        train = ids[:max_tokens]
        valid = ids[max_tokens: max_tokens + valid_tokens]
        return Dataset(vocab, train, valid, path, sha1_of(path), task.tokenizer,
                       sha256=sha256)
    n_train, n_valid, n_test = task.splits.counts(len(ids), task=task.name)
    bounds = (n_train, n_train + n_valid, n_train + n_valid + n_test)
    return Dataset(vocab, ids[:bounds[0]], ids[bounds[0]:bounds[1]], path, sha1_of(path),
                   task.tokenizer, test=ids[bounds[1]:bounds[2]], bounds=bounds,
                   sha256=sha256)


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
