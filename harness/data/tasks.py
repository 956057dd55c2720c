"""Tasks: a corpus plus a recipe, defined in a TOML file (no code needed).

``--task NAME`` finds ``NAME.toml`` among the task files shipped with harness (the
top-level ``tasks/`` folder, installed as the ``harness_tasks`` package); ``--task PATH``
reads any task file. A task file holds ``name``, ``description``, ``tokenizer`` (``char``
or ``word``), a ``[corpus]`` table (``url`` and/or ``path``, optional ``sha1``; a relative
``path`` is relative to the task file), an optional ``[recipe]`` table overriding
:class:`~harness.plan.recipe.Recipe` defaults, and an optional ``[generate]`` table (``prefixes``
and ``num_preds`` for the greedy samples).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from harness.data.corpus import CorpusSource, locate, sha1_of
from harness.errors import ConfigError
from harness.plan.recipe import Recipe
from harness.data.text import TOKENIZERS, Vocab, read_lines, tokenize

DEFAULT_PREFIXES = ("time traveller", "traveller")
"""d2l's ``predict_ch8`` prefixes: the samples taken after training, unless a task says."""
_MISSING = object()

@dataclass(frozen=True)
class Task:
    """A named corpus, how to tokenise it, and the recipe it is trained with by default."""

    name: str
    source: CorpusSource
    tokenizer: str = "char"
    description: str = ""
    recipe: Recipe = field(default_factory=Recipe)
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    num_preds: int = 50
    prefixes_declared: bool = False
    """Whether the task file names its prefixes (only those are checked against the
    vocabulary: d2l's default ones mean nothing to another corpus, and stay unchecked)."""


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
        return parse_task(_read_task_file(path, spec), base=path.parent, origin=spec)
    resource = resources.files("harness_tasks") / f"{spec}.toml"
    if not resource.is_file():
        raise ConfigError(f"unknown task {spec!r}; choose from: "
                          f"{', '.join(builtin_task_names())}, or give a task file path")
    return parse_task(resource.read_text(encoding="utf-8"), base=None, origin=spec)


def _read_task_file(path: Path, origin: str) -> str:
    """The file's text; a ConfigError naming it if it cannot be read or is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"task {origin}: not valid UTF-8 (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"task {origin}: cannot read ({error.strerror})") from None


def parse_task(text: str, base: Path | None, origin: str) -> Task:
    """Build a Task from TOML text; relative corpus paths resolve against ``base``.

    Every key is checked here, with its type, so a mistake in a task file is a one-line
    ConfigError naming the file and the key before anything is downloaded or trained (a bad
    ``[generate]`` table would otherwise only fail after training, losing the result).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"task {origin}: invalid task file (TOML: {error})") from None
    reader = _TaskReader(data, origin)
    reader.keys("", data, ("name", "description", "tokenizer", "corpus", "recipe", "generate"))
    name = reader.text("", data, "name", required=True)
    description = reader.text("", data, "description", allow_empty=True) or ""
    tokenizer = reader.text("", data, "tokenizer") or "char"
    if tokenizer not in TOKENIZERS:
        reader.fail("tokenizer", f"must be one of {', '.join(TOKENIZERS)}", tokenizer)
    source = _parse_corpus(reader, base)
    recipe = _parse_recipe(reader)
    prefixes, num_preds = _parse_generate(reader, tokenizer)
    return Task(name=name, source=source, tokenizer=tokenizer, description=description,
                recipe=recipe, prefixes=prefixes, num_preds=num_preds,
                prefixes_declared="prefixes" in reader.table("generate"))


class _TaskReader:
    """Typed reads of a parsed task file, each failure a ConfigError naming file and key."""

    def __init__(self, data: dict[str, Any], origin: str) -> None:
        self.data = data
        self.origin = origin

    def fail(self, key: str, problem: str, value: object = _MISSING) -> NoReturn:
        got = "" if value is _MISSING else f", got {_show(value)}"
        raise ConfigError(f"task {self.origin}: {key} {problem}{got}")

    def table(self, key: str, required: bool = False) -> dict[str, Any]:
        """The ``[key]`` table ({} if absent and not required)."""
        if key not in self.data:
            if required:
                self.fail(f"[{key}]", "is missing")
            return {}
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(f"[{key}]", "must be a table", value)
        return value

    def keys(self, where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        """Refuse keys not in ``allowed`` (a typo would otherwise be silently ignored)."""
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(f"task {self.origin}: unknown key(s) {where}"
                              f"{', '.join(unknown)}; choose from: {', '.join(allowed)}")

    def text(self, where: str, table: dict[str, Any], key: str, required: bool = False,
             allow_empty: bool = False) -> str | None:
        """A string (non-blank unless ``allow_empty``), or None if absent and not required."""
        if key not in table:
            if required:
                self.fail(f"{where}{key}", "is missing")
            return None
        value = table[key]
        if not isinstance(value, str) or not (allow_empty or value.strip()):
            self.fail(f"{where}{key}", "must be a non-empty string", value)
        return value


def _show(value: object) -> str:
    """``repr(value)``, cut short: an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_corpus(reader: _TaskReader, base: Path | None) -> CorpusSource:
    """The ``[corpus]`` table: ``url`` and/or ``path`` (relative to ``base``), ``sha1``."""
    corpus = reader.table("corpus", required=True)
    reader.keys("[corpus] ", corpus, ("url", "path", "sha1"))
    url = reader.text("[corpus] ", corpus, "url")
    path = reader.text("[corpus] ", corpus, "path")
    sha1 = reader.text("[corpus] ", corpus, "sha1")
    if url is None and path is None:
        reader.fail("[corpus]", "needs a url or a path")
    local = Path(path) if path is not None else None
    if local is not None and base is not None and not local.is_absolute():
        local = base / local
    try:  # CorpusSource checks the sha1's form and lower-cases it
        return CorpusSource(url=url, path=local, sha1=sha1)
    except ConfigError as error:
        raise ConfigError(f"task {reader.origin}: [corpus] {error}") from None


def _parse_recipe(reader: _TaskReader) -> Recipe:
    """The ``[recipe]`` table over Recipe's defaults, validated on its own."""
    try:
        recipe = Recipe().with_overrides(**reader.table("recipe"))
        recipe.validate()
    except ConfigError as error:
        raise ConfigError(f"task {reader.origin}: [recipe] {error}") from None
    return recipe


def _parse_generate(reader: _TaskReader, tokenizer: str) -> tuple[tuple[str, ...], int]:
    """The ``[generate]`` table: the sample prefixes (each at least one token) and
    ``num_preds`` (a positive integer)."""
    generate = reader.table("generate")
    reader.keys("[generate] ", generate, ("prefixes", "num_preds"))
    prefixes = generate.get("prefixes", list(DEFAULT_PREFIXES))
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        reader.fail("[generate] prefixes", "must be a list of strings", prefixes)
    for prefix in prefixes:
        if not tokenize([prefix], tokenizer)[0]:
            reader.fail("[generate] prefixes", f"holds {prefix!r}, which has no {tokenizer} "
                        "token to start a sample from")
    num_preds = generate.get("num_preds", 50)
    if not isinstance(num_preds, int) or isinstance(num_preds, bool) or num_preds <= 0:
        reader.fail("[generate] num_preds", "must be a positive integer", num_preds)
    return tuple(prefixes), num_preds


def load_dataset(task: Task, recipe: Recipe, corpus: Path | None = None,
                 quiet: bool = False) -> Dataset:
    """Fetch, verify, preprocess and split the task's corpus as d2l does, without checking
    that ``recipe``'s minibatches fit (a ``--set`` grid checks each point's own recipe);
    a download is announced on stderr unless ``quiet``.

    The vocabulary covers the whole corpus (d2l builds it before truncating); the first
    ``recipe.max_tokens`` tokens train, the next ``recipe.valid_tokens`` validate. The
    task's sample prefixes are checked against the vocabulary here, before any training.
    """
    path = locate(task.source, corpus, quiet)
    tokens = [t for line in tokenize(read_lines(path), task.tokenizer) for t in line]
    vocab = Vocab(tokens)
    check_prefixes(task, vocab)
    ids = vocab.encode(tokens)
    train = ids[: recipe.max_tokens]
    valid = ids[recipe.max_tokens: recipe.max_tokens + recipe.valid_tokens]
    return Dataset(vocab, train, valid, path, sha1_of(path), task.tokenizer)


def prepare(task: Task, recipe: Recipe, corpus: Path | None = None) -> Dataset:
    """:func:`load_dataset`, then :func:`check_fits`: a corpus too short for one minibatch
    of ``recipe`` is a ConfigError, raised before any training."""
    dataset = load_dataset(task, recipe, corpus)
    check_fits(dataset, recipe)
    return dataset


def check_prefixes(task: Task, vocab: Vocab) -> None:
    """ConfigError if a prefix the task file names has tokens the corpus never has: they
    would all be read as ``<unk>``. (Upper case, digits and punctuation never survive the
    preprocessing; a word may simply not occur.)"""
    if not task.prefixes_declared:
        return
    for prefix in task.prefixes:
        unknown = vocab.missing(tokenize([prefix], task.tokenizer)[0])
        if unknown:
            shown = ", ".join(map(repr, unknown))
            why = "preprocessing keeps only lower-case letters and spaces" \
                if task.tokenizer == "char" else "no such word in the corpus"
            raise ConfigError(
                f"task {task.name}: [generate] prefix {prefix!r} has tokens the corpus "
                f"never has: {shown} ({why}); they would all be read as <unk>")


def check_fits(dataset: Dataset, recipe: Recipe) -> None:
    """ConfigError unless the data holds at least one minibatch of ``recipe`` for training
    (and for validation, when it is on); the validation error says which setting to change,
    with the numbers that would fit."""
    needed = recipe.min_train_tokens()
    if len(dataset.train) < needed:
        raise ConfigError(
            f"{dataset.path}: {len(dataset.train)} training tokens, but one minibatch of "
            f"batch_size {recipe.batch_size} x num_steps {recipe.num_steps} needs at least "
            f"{needed}"
        )
    minibatch = recipe.batch_size * recipe.num_steps + 1
    if recipe.valid_tokens and len(dataset.valid) < minibatch:
        raise ConfigError(
            f"{dataset.path}: validation needs one minibatch of batch_size "
            f"{recipe.batch_size} x num_steps {recipe.num_steps} ({minibatch} tokens), but "
            f"{_valid_shortfall(dataset, recipe, minibatch)}, lower --batch-size or --steps, "
            "or set --valid-tokens 0"
        )


def _valid_shortfall(dataset: Dataset, recipe: Recipe, minibatch: int) -> str:
    """Why validation has fewer than ``minibatch`` tokens, and the first way out: more
    validation tokens, or (when the corpus ends first) fewer training tokens."""
    if len(dataset.valid) == recipe.valid_tokens:
        return (f"--valid-tokens is {recipe.valid_tokens}: raise --valid-tokens to at least "
                f"{minibatch}")
    room = len(dataset.train) + len(dataset.valid) - minibatch
    where = (f"lower --max-tokens to at most {room}" if room >= recipe.min_train_tokens()
             else "use a longer corpus")
    return (f"the corpus has only {len(dataset.valid)} tokens after the "
            f"{len(dataset.train)} training tokens: {where}")
