"""Task files: a corpus, its recipe defaults, its prompts and its reference numbers, in TOML.

``--task NAME`` finds ``NAME.toml`` among the task files shipped with harness (the
top-level ``tasks/`` folder, installed as the ``harness_tasks`` package); ``--task PATH``
reads any task file. A task file holds ``name``, ``description``, ``tokenizer`` (``char``
or ``word``) and:

- ``text``: ``d2l`` (the default), ``raw`` or ``bytes`` (:data:`TEXT_MODES`);
- ``[corpus]``: ``url`` (optional ``member``: the file to read in the zip it downloads)
  and/or ``path`` (relative to the task file), or an installed ``package`` and a glob of
  its ``files`` (optional ``install``: how to install it); optional ``sha1``, ``sha256``
  and ``size`` (bytes, checked when no hash is given) of the text read;
- ``[splits]``: fixed ``train`` / ``valid`` / ``test`` boundaries, fractions or token
  counts (:mod:`harness.data.splits`); a task without them is d2l's: the recipe's
  ``max_tokens`` train and the next ``valid_tokens`` validate, and there is no test part;
- ``[recipe]``: recipe fields the task trains with by default (names and ranges are the
  plan's to check: this stage knows only that they are strings, numbers or booleans);
- ``[generate]``: ``prefixes`` to generate text from after training (none: no text) and
  ``num_preds``;
- ``[defaults]``: the ``models`` and ``samplers`` a run trains when it names none (none:
  the command line must name them);
- ``[[reference]]``: published numbers (see :mod:`harness.data.references`), each with
  ``model``, ``sampler``, ``metric``, ``low``, ``high``, ``source``, optional ``settings``,
  ``digits`` and ``ignore``; ``[reference_defaults]`` gives ``metric``, ``source``,
  ``digits`` or ``ignore`` to every entry that does not set its own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from harness.data.corpus import CorpusSource
from harness.data.published import Published, parse_published
from harness.data.splits import Splits, parse_splits
from harness.data.references import (Reference, ReferenceSet, Scalar, check_scalars,
                                     parse_reference, short_repr, shown_name)
from harness.data.text import TOKENIZERS, tokenize
from harness.errors import ConfigError

_MISSING = object()
_KEYS = ("name", "description", "tokenizer", "text", "corpus", "splits", "recipe", "generate",
         "defaults", "reference", "reference_defaults", "published")
TEXT_MODES = ("d2l", "raw", "bytes")
"""``text``: ``d2l`` (d2l's preprocessing: letters and spaces, lower case), ``raw`` (the
UTF-8 text as it is) or ``bytes`` (one token per byte). Only ``d2l`` has word tokens."""
_REFERENCE_DEFAULTS = ("metric", "source", "digits", "ignore")
_CORPUS_KEYS = ("url", "path", "member", "package", "files", "install", "sha1", "sha256",
                "size")


@dataclass(frozen=True)
class Task:
    """A named corpus, how to tokenise it, and what the task file says to train it with,
    generate text from and compare it against."""

    name: str
    source: CorpusSource
    tokenizer: str = "char"
    description: str = ""
    text: str = "d2l"
    """How the corpus becomes tokens (:data:`TEXT_MODES`)."""
    splits: Splits | None = None
    """Fixed train / valid / test boundaries; None: d2l's recipe-sized slices."""
    recipe: Mapping[str, Scalar] = field(default_factory=dict)
    """The ``[recipe]`` table as written: overrides of the recipe's defaults."""
    prefixes: tuple[str, ...] = ()
    """Prompts to generate greedy text from after training; none: no text."""
    num_preds: int = 50
    default_models: tuple[str, ...] = ()
    """The models a run trains when it names none; empty: the CLI then requires --models."""
    default_samplers: tuple[str, ...] = ()
    """The samplers a run trains when it names none; empty: the CLI then requires
    --samplers."""
    references: tuple[Reference, ...] = ()
    published: tuple[Published, ...] = ()
    """Numbers other work publishes on this held-out task (:mod:`harness.data.published`)."""
    origin: str = ""
    """How errors name the task: the name or path it was loaded by."""

    @property
    def reference_set(self) -> ReferenceSet:
        """The task's reference numbers with the task, corpus and recipe they hold for."""
        return ReferenceSet(self.name, self.source.sha1, dict(self.recipe), self.references)

    def references_json(self) -> dict[str, Any]:
        """:attr:`reference_set` as a run's manifest stores it (its ``references`` key)."""
        return self.reference_set.to_json()


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


def run_references(stored: Any, task: str, corpus_sha1: str | None) -> ReferenceSet:
    """The reference numbers a run is compared with: those its manifest stores
    (``stored``), or, for a manifest without them (``stored`` None), those of the shipped
    task of the same name if the run's corpus is that task's. ValueError if ``stored`` is
    malformed."""
    if stored is not None:
        return ReferenceSet.from_json(stored)
    none = ReferenceSet(task, None, {})
    if task not in builtin_task_names():
        return none
    shipped = load_task(task)
    if shipped.source.sha1 is None or shipped.source.sha1 != corpus_sha1:
        return none
    return shipped.reference_set


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
    reader.keys("", data, _KEYS)
    name = reader.text(data, "name", required=True)
    description = reader.text(data, "description", allow_empty=True) or ""
    tokenizer = reader.text(data, "tokenizer") or "char"
    if tokenizer not in TOKENIZERS:
        reader.fail("tokenizer", f"must be one of {', '.join(TOKENIZERS)}", tokenizer)
    text_mode = reader.text(data, "text") or "d2l"
    if text_mode not in TEXT_MODES:
        reader.fail("text", f"must be one of {', '.join(TEXT_MODES)}", text_mode)
    if text_mode != "d2l" and tokenizer != "char":
        reader.fail("text", f"{text_mode!r} needs tokenizer = \"char\"", text_mode)
    source = _parse_corpus(reader, base)
    splits = parse_splits(reader.table("splits"), origin=origin) if "splits" in data \
        else None
    recipe = reader.table("recipe")
    try:
        check_scalars("[recipe]", recipe)
    except ValueError as error:
        raise ConfigError(f"task {origin}: {error}") from None
    prefixes, num_preds = _parse_generate(reader, tokenizer)
    models, samplers = _parse_defaults(reader)
    references = _parse_references(reader, source)
    published = _parse_published(reader)
    return Task(name=name, source=source, tokenizer=tokenizer, description=description,
                text=text_mode, splits=splits, recipe=dict(recipe), prefixes=prefixes,
                num_preds=num_preds, default_models=models, default_samplers=samplers,
                references=references, published=published, origin=origin)


class _TaskReader:
    """Typed reads of a parsed task file, each failure a ConfigError naming file and key."""

    def __init__(self, data: dict[str, Any], origin: str) -> None:
        self.data = data
        self.origin = origin

    def fail(self, key: str, problem: str, value: object = _MISSING) -> NoReturn:
        got = "" if value is _MISSING else f", got {short_repr(value)}"
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
                              f"{', '.join(map(shown_name, unknown))}; "
                              f"choose from: {', '.join(allowed)}")

    def text(self, table: dict[str, Any], key: str, *, where: str = "",
             required: bool = False, allow_empty: bool = False) -> str | None:
        """A string (non-blank unless ``allow_empty``), or None if absent and not required."""
        if key not in table:
            if required:
                self.fail(f"{where}{key}", "is missing")
            return None
        value = table[key]
        if not isinstance(value, str) or not (allow_empty or value.strip()):
            self.fail(f"{where}{key}", "must be a non-empty string", value)
        return value

    def names(self, table: dict[str, Any], key: str, *, where: str = "") -> tuple[str, ...]:
        """A list of non-empty strings (() if absent)."""
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            self.fail(f"{where}{key}", "must be a list of non-empty strings", value)
        return tuple(value)


def _parse_corpus(reader: _TaskReader, base: Path | None) -> CorpusSource:
    """The ``[corpus]`` table: ``url`` (with ``member``, a file in the zip it downloads)
    and/or ``path`` (relative to ``base``), or ``package`` and ``files`` (and ``install``);
    ``sha1``, ``sha256``, ``size`` (see :class:`CorpusSource`)."""
    corpus = reader.table("corpus", required=True)
    reader.keys("[corpus] ", corpus, _CORPUS_KEYS)
    texts = {key: reader.text(corpus, key, where="[corpus] ")
             for key in _CORPUS_KEYS if key != "size"}
    if texts["url"] is None and texts["path"] is None and texts["package"] is None:
        reader.fail("[corpus]", "needs a url or a path, or a package")
    path = texts.pop("path")
    local = Path(path) if path is not None else None
    if local is not None and base is not None and not local.is_absolute():
        local = base / local
    try:  # CorpusSource checks each value's form and lower-cases the hashes
        return CorpusSource(path=local, size=corpus.get("size"), **texts)
    except ConfigError as error:
        raise ConfigError(f"task {reader.origin}: [corpus] {error}") from None


def _parse_generate(reader: _TaskReader, tokenizer: str) -> tuple[tuple[str, ...], int]:
    """The ``[generate]`` table: the prefixes (each at least one token) and
    ``num_preds`` (a positive integer)."""
    generate = reader.table("generate")
    reader.keys("[generate] ", generate, ("prefixes", "num_preds"))
    prefixes = generate.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        reader.fail("[generate] prefixes", "must be a list of strings", prefixes)
    for prefix in prefixes:
        if not tokenize([prefix], tokenizer)[0]:
            reader.fail("[generate] prefixes", f"holds {prefix!r}, which has no {tokenizer} "
                        "token to generate text from")
    num_preds = generate.get("num_preds", 50)
    if not isinstance(num_preds, int) or isinstance(num_preds, bool) or num_preds <= 0:
        reader.fail("[generate] num_preds", "must be a positive integer", num_preds)
    return tuple(prefixes), num_preds


def _parse_defaults(reader: _TaskReader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``[defaults]`` table: ``models`` and ``samplers`` (names; the plan checks that
    they are registered)."""
    defaults = reader.table("defaults")
    reader.keys("[defaults] ", defaults, ("models", "samplers"))
    return (reader.names(defaults, "models", where="[defaults] "),
            reader.names(defaults, "samplers", where="[defaults] "))


def _parse_published(reader: _TaskReader) -> tuple[Published, ...]:
    """The ``[[published]]`` entries: numbers other work reports on this task."""
    entries = reader.data.get("published", [])
    if not isinstance(entries, list):
        reader.fail("[[published]]", "must be an array of tables", entries)
    found = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            reader.fail(f"[[published]] #{number}", "must be a table", entry)
        try:
            found.append(parse_published(entry))
        except ValueError as error:
            raise ConfigError(f"task {reader.origin}: [[published]] #{number} {error}") from None
    return tuple(found)


def _parse_references(reader: _TaskReader, source: CorpusSource) -> tuple[Reference, ...]:
    """The ``[[reference]]`` entries, each over ``[reference_defaults]``; they need the
    corpus's sha1, since a published number holds for one exact text."""
    defaults = reader.table("reference_defaults")
    reader.keys("[reference_defaults] ", defaults, _REFERENCE_DEFAULTS)
    entries = reader.data.get("reference", [])
    if not isinstance(entries, list):
        reader.fail("[[reference]]", "must be an array of tables", entries)
    if entries and source.sha1 is None:
        reader.fail("[[reference]]", "needs [corpus] sha1: a published number holds for "
                    "one exact corpus")
    references = []
    for number, entry in enumerate(entries, start=1):
        where = f"[[reference]] #{number}"
        if not isinstance(entry, dict):
            reader.fail(where, "must be a table", entry)
        try:
            references.append(parse_reference({**defaults, **entry}))
        except ValueError as error:
            key = str(error).split(" ", 1)[0]
            if key in defaults and key not in entry:
                where = "[reference_defaults]"
            raise ConfigError(f"task {reader.origin}: {where} {error}") from None
    return tuple(references)
