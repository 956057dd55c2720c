"""Tasks: a corpus plus a recipe, defined in a TOML file (no code needed).

``--task NAME`` finds ``NAME.toml`` among the task files shipped with harness (the
top-level ``tasks/`` folder, installed as the ``harness_tasks`` package); ``--task PATH``
reads any task file. A task file holds ``name``, ``description``, ``tokenizer`` (``char``
or ``word``), a ``[corpus]`` table (``url`` and/or ``path``, optional ``sha1``; a relative
``path`` is relative to the task file), an optional ``[recipe]`` table overriding
:class:`~harness.recipe.Recipe` defaults, and an optional ``[generate]`` table (``prefixes``
and ``num_preds`` for the greedy samples).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.corpus import CorpusSource, locate, sha1_of
from harness.errors import ConfigError
from harness.recipe import Recipe
from harness.text import TOKENIZERS, Vocab, read_lines, tokenize


@dataclass(frozen=True)
class Task:
    """A named corpus, how to tokenise it, and the recipe it is trained with by default."""

    name: str
    source: CorpusSource
    tokenizer: str = "char"
    description: str = ""
    recipe: Recipe = field(default_factory=Recipe)
    prefixes: tuple[str, ...] = ("time traveller", "traveller")
    num_preds: int = 50


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


def builtin_task_names() -> list[str]:
    """Names of the task files shipped with harness."""
    folder = resources.files("harness_tasks")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_task(spec: str) -> Task:
    """The task named ``spec`` (a shipped task) or stored at path ``spec``."""
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"task file not found: {spec}")
        return parse_task(path.read_text(encoding="utf-8"), base=path.parent, origin=spec)
    resource = resources.files("harness_tasks") / f"{spec}.toml"
    if not resource.is_file():
        raise ConfigError(f"unknown task {spec!r}; choose from: "
                          f"{', '.join(builtin_task_names())}, or give a task file path")
    return parse_task(resource.read_text(encoding="utf-8"), base=None, origin=spec)


def parse_task(text: str, base: Path | None, origin: str) -> Task:
    """Build a Task from TOML text; relative corpus paths resolve against ``base``."""
    try:
        data = tomllib.loads(text)
        corpus = data["corpus"]
        path = corpus.get("path")
        if path is not None and base is not None and not Path(path).is_absolute():
            path = base / path
        source = CorpusSource(url=corpus.get("url"), sha1=corpus.get("sha1"),
                              path=Path(path) if path is not None else None)
        tokenizer = data.get("tokenizer", "char")
        generate = data.get("generate", {})
        task = Task(
            name=str(data["name"]), source=source, tokenizer=tokenizer,
            description=data.get("description", ""),
            recipe=Recipe().with_overrides(**data.get("recipe", {})),
            prefixes=tuple(generate.get("prefixes", ("time traveller", "traveller"))),
            num_preds=int(generate.get("num_preds", 50)),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"task {origin}: invalid task file ({type(error).__name__}: {error})")
    if source.url is None and source.path is None:
        raise ConfigError(f"task {origin}: [corpus] needs a url or a path")
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"task {origin}: tokenizer must be one of {', '.join(TOKENIZERS)}")
    return task


def prepare(task: Task, recipe: Recipe, corpus: Path | None = None) -> Dataset:
    """Fetch, verify, preprocess and split the task's corpus as d2l does.

    The vocabulary covers the whole corpus (d2l builds it before truncating); the first
    ``recipe.max_tokens`` tokens train, the next ``recipe.valid_tokens`` validate. A corpus
    too short for one minibatch is a ConfigError, raised before any training.
    """
    path = locate(task.source, corpus)
    tokens = [t for line in tokenize(read_lines(path), task.tokenizer) for t in line]
    vocab = Vocab(tokens)
    ids = vocab.encode(tokens)
    train = ids[: recipe.max_tokens]
    valid = ids[recipe.max_tokens: recipe.max_tokens + recipe.valid_tokens]
    dataset = Dataset(vocab, train, valid, path, sha1_of(path), task.tokenizer)
    check_fits(dataset, recipe)
    return dataset


def check_fits(dataset: Dataset, recipe: Recipe) -> None:
    """ConfigError unless the data holds at least one minibatch of ``recipe`` for training
    (and for validation, when it is on)."""
    needed = recipe.min_train_tokens()
    if len(dataset.train) < needed:
        raise ConfigError(
            f"{dataset.path}: {len(dataset.train)} training tokens, but one minibatch of "
            f"batch_size {recipe.batch_size} x num_steps {recipe.num_steps} needs at least "
            f"{needed}"
        )
    if recipe.valid_tokens and len(dataset.valid) < recipe.batch_size * recipe.num_steps + 1:
        raise ConfigError(
            f"{dataset.path}: {len(dataset.valid)} tokens left for validation after "
            f"{recipe.max_tokens} training tokens, fewer than one minibatch "
            f"({recipe.batch_size * recipe.num_steps + 1}); lower --max-tokens, or set "
            "--valid-tokens 0"
        )
