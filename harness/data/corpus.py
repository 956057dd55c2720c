"""Getting a corpus file: a local path, or a download that is sha1-verified and cached.

Downloading, hash checking and caching are pooch's job. A cached file is verified before
use and refused on mismatch, not silently downloaded again. Each URL has its own cache
folder, so two URLs ending in the same file name never share a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, CorpusError

CORPUS_ENV = "HARNESS_CORPUS"
"""A local corpus file to use instead of downloading: it stands in for a task's URL, never
for a task's own ``path`` (``--corpus`` wins over both)."""
CACHE_ENV = "HARNESS_CACHE_DIR"
"""Where downloaded corpora are cached (default: the user's cache directory)."""


@dataclass(frozen=True)
class CorpusSource:
    """Where a task's text comes from: a URL to download, or a file, and its expected sha1."""

    url: str | None = None
    path: Path | None = None
    sha1: str | None = None

    def __post_init__(self) -> None:
        # hexdigest() is lower case; a task file may write the sha1 in upper case
        if self.sha1 is None:
            return
        if not isinstance(self.sha1, str) or not re.fullmatch(r"[0-9A-Fa-f]{40}", self.sha1):
            raise ConfigError(f"sha1 must be 40 hexadecimal digits, got {self.sha1!r}")
        object.__setattr__(self, "sha1", self.sha1.lower())

    @property
    def filename(self) -> str:
        if self.path is not None:
            return self.path.name
        assert self.url is not None
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def sha1_of(path: Path) -> str:
    """The hex sha1 of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The download cache: ``$HARNESS_CACHE_DIR`` or the platform's user cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import pooch

    return Path(pooch.os_cache("rnn-harness"))


def cache_path(url: str) -> Path:
    """Where ``url`` is cached: a folder named by a short hash of the whole URL (so URLs
    ending in the same file name do not share it), holding the URL's readable file name."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_dir() / key / CorpusSource(url=url).filename


def locate(source: CorpusSource, override: Path | None = None, quiet: bool = False) -> Path:
    """The verified local file for ``source``.

    ``override`` (``--corpus``), else the source's own path, else (for a source with only a
    URL) ``$HARNESS_CORPUS``, else the cached download, else a fresh download, announced on
    stderr unless ``quiet``. Any file checked against a known sha1 that does not match is
    refused with both hashes.
    """
    local = override or source.path
    if local is None and os.environ.get(CORPUS_ENV):
        local = Path(os.environ[CORPUS_ENV])
    if local is not None:
        if not local.is_file():
            raise CorpusError(f"corpus file not found: {local}")
        _verify(local, source.sha1, "corpus")
        return local
    if source.url is None:
        raise CorpusError("the task names neither a corpus URL nor a file")
    cached = cache_path(source.url)
    _adopt_flat_cache(source, cached)
    if cached.is_file():
        _verify(cached, source.sha1, "cached corpus", hint="; delete it to download again")
        return cached
    return _download(source, cached, quiet)


def _adopt_flat_cache(source: CorpusSource, cached: Path) -> None:
    """Move a file from the flat cache layout (``cache_dir()/NAME``, keyed by name only)
    to ``cached``, only when its sha1 is the one the task expects: without a sha1 it may
    hold another URL's text."""
    flat = cache_dir() / source.filename
    if cached.exists() or source.sha1 is None or not flat.is_file():
        return
    if sha1_of(flat) == source.sha1:
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(flat, cached)


def _verify(path: Path, expected: str | None, what: str, hint: str = "") -> None:
    if expected is None:
        return
    actual = sha1_of(path)
    if actual != expected:
        raise CorpusError(
            f"{what} {path} has sha1 {actual}, expected {expected}{hint}"
        )


@contextmanager
def _pooch_silenced() -> Iterator[None]:
    """Hide pooch's info lines: its "Downloading data from" (the harness says it itself)
    and its advice to pass a SHA256 as ``known_hash`` to ``pooch.retrieve``, which means
    nothing to a harness user. Warnings still show."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(source: CorpusSource, target: Path, quiet: bool = False) -> Path:
    import pooch
    import requests

    known_hash = f"sha1:{source.sha1}" if source.sha1 else None
    if not quiet:
        print(f"downloading {source.url} to {target}", file=sys.stderr)
    try:
        with _pooch_silenced():
            fetched = pooch.retrieve(
                source.url, known_hash=known_hash, fname=target.name, path=target.parent,
                progressbar=False,
            )
    except ValueError as error:  # pooch: hash mismatch; the partial file is already removed
        raise CorpusError(f"download of {source.url} failed verification: "
                          + " ".join(str(error).split())) from None
    except (requests.RequestException, OSError) as error:
        raise CorpusError(
            f"cannot download {source.url} ({type(error).__name__}); offline? point at a local "
            f"copy with --corpus PATH or {CORPUS_ENV}=PATH"
        ) from None
    return Path(fetched)
