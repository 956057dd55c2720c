"""Getting a corpus file: a local path, or a download that is sha1-verified and cached.

Downloading, hash checking and caching are pooch's job (d2l hand-writes the same in
``d2l.download``). A cached file is verified before use and refused on mismatch, rather
than silently downloaded again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CorpusError

CORPUS_ENV = "HARNESS_CORPUS"
"""A local corpus file to use instead of downloading (``--corpus`` wins over it)."""
CACHE_ENV = "HARNESS_CACHE_DIR"
"""Where downloaded corpora are cached (default: the user's cache directory)."""


@dataclass(frozen=True)
class CorpusSource:
    """Where a task's text comes from: a URL to download, or a file, and its expected sha1."""

    url: str | None = None
    path: Path | None = None
    sha1: str | None = None

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


def locate(source: CorpusSource, override: Path | None = None) -> Path:
    """The verified local file for ``source``.

    ``override`` (``--corpus``), else ``$HARNESS_CORPUS``, else the source's own path, else
    the cached download, else a fresh download. Any file checked against a known sha1 that
    does not match is refused with both hashes.
    """
    local = override or (Path(os.environ[CORPUS_ENV]) if os.environ.get(CORPUS_ENV) else None)
    local = local or source.path
    if local is not None:
        if not local.is_file():
            raise CorpusError(f"corpus file not found: {local}")
        _verify(local, source.sha1, "corpus")
        return local
    if source.url is None:
        raise CorpusError("the task names neither a corpus URL nor a file")
    cached = cache_dir() / source.filename
    if cached.is_file():
        _verify(cached, source.sha1, "cached corpus", hint="; delete it to download again")
        return cached
    return _download(source, cached)


def _verify(path: Path, expected: str | None, what: str, hint: str = "") -> None:
    if expected is None:
        return
    actual = sha1_of(path)
    if actual != expected:
        raise CorpusError(
            f"{what} {path} has sha1 {actual}, expected {expected}{hint}"
        )


def _download(source: CorpusSource, target: Path) -> Path:
    import pooch
    import requests

    known_hash = f"sha1:{source.sha1}" if source.sha1 else None
    try:
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
