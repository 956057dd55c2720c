"""The run directory: the one place results live, written so that nothing is lost.

Layout of ``<root>/<run_id>/``::

    manifest.json          settings, environment, plugins, status (rewritten atomically)
    records.jsonl          one JSON line per finished combination, appended and fsynced
    curves/<key>.csv       per-epoch curve of each combination (written before its record)
    errors/<key>.txt       the traceback of a combination that failed (or why it crashed)
    checkpoints/<key>.pt   trained weights (``--save-checkpoints``): a state_dict only
    checkpoints/vocab.json the vocabulary the checkpoints were trained with
    report.md              derived from the files above; can be regenerated at any time
    .lock                  held (flock) by the one process writing the run

A record line torn by a kill is detected on reading and skipped with a warning, and the
next record starts on a line of its own. JSON never holds a bare NaN or Infinity:
non-finite numbers are stored as null.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import ConfigError
from harness.names import safe_name
from harness.results.schema import Manifest, Record

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite(value: Any) -> Any:
    """Replace non-finite floats (also inside lists and dicts) by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(value: Any, **kwargs: Any) -> str:
    return json.dumps(finite(value), allow_nan=False, ensure_ascii=False, **kwargs)


def new_run_id(label: str = "") -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sortable by time, unique without coordination."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = secrets.token_hex(3)
    return f"{stamp}-{safe_name(label)}-{suffix}" if label else f"{stamp}-{suffix}"


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: Path, manifest: Manifest, label: str = "") -> RunStore:
        """Make a new, uniquely named run directory under ``root`` with its manifest."""
        while True:
            path = root / new_run_id(label)
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:  # same second and same random suffix: draw again
                continue
            except OSError as error:
                raise ConfigError(f"cannot create a run directory in {root} "
                                  f"({error.strerror})") from None
        store = cls(path)
        store.write_manifest(manifest.with_changes(run_id=path.name))
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """An existing run directory; ConfigError if it is not one."""
        if not (Path(path) / MANIFEST).is_file():
            raise ConfigError(f"{path} is not a run directory (no {MANIFEST})")
        return cls(path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock while writing it: a second process (a ``--resume`` of a run
        still going) gets a ConfigError instead of interleaving records. The kernel drops
        the lock when its holder dies, however it dies."""
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.path} is being written by another harness process "
                              f"(it holds {LOCK})") from None
        try:
            yield
        finally:
            lock.release()

    # manifest ---------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The run's manifest; ConfigError naming the file if it is not one."""
        path = self.path / MANIFEST
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            return Manifest.from_json(data, run_id=self.path.name)
        except OSError as error:
            raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
        except (ValueError, TypeError) as error:  # JSON, UTF-8 or shape
            raise ConfigError(f"{path}: not a harness manifest ({error})") from None

    def write_manifest(self, manifest: Manifest) -> None:
        write_atomic(self.path / MANIFEST, to_json(manifest.to_json(), indent=2) + "\n")

    def update_manifest(self, **changes: Any) -> None:
        self.write_manifest(self.manifest().with_changes(**changes))

    # records ----------------------------------------------------------------------------
    def append_record(
        self,
        record: Record,
        curve: Iterable[Mapping[str, Any]] = (),
        traceback: str | None = None,
    ) -> None:
        """Make one finished combination durable: its curve and traceback first, then its
        record line (appended, flushed and fsynced), so a record never points at nothing."""
        key = safe_name(record.key)
        rows = [finite(dict(row)) for row in curve]
        if rows:
            write_atomic(self.path / "curves" / f"{key}.csv", _csv(rows))
        if traceback:
            write_atomic(self.path / "errors" / f"{key}.txt", traceback)
        line = (to_json(record.to_json()) + "\n").encode("utf-8")
        with open(self.path / RECORDS, "a+b") as handle:
            if handle.seek(0, os.SEEK_END) and not _ends_with_newline(handle):
                line = b"\n" + line  # the last line was torn by a kill: leave it alone
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[Record]:
        """All complete records; a torn or corrupt line is skipped with a warning. When a
        combination was recorded twice (a resumed run), the last record wins."""
        path = self.path / RECORDS
        if not path.is_file():
            return []
        found: dict[str, Record] = {}
        # Bytes, not read_text (which translates "\r"); a kill may tear a character.
        text = path.read_bytes().decode("utf-8", errors="replace")
        # Records end with "\n" only: str.splitlines would also split on U+2028, U+0085 and
        # the like, which to_json writes raw inside strings (ensure_ascii=False).
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = Record.from_json(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                warnings.warn(f"{path}:{number}: skipping a torn or corrupt record line",
                              stacklevel=2)
                continue
            found[record.key] = record
        return list(found.values())

    def curve(self, key: str) -> list[dict[str, Any]]:
        """The per-epoch curve of one combination (empty if none was stored)."""
        path = self.path / "curves" / f"{safe_name(key)}.csv"
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", newline="") as handle:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]

    def write_text(self, name: str, text: str) -> Path:
        """Write a derived file (e.g. ``report.md``) atomically inside the run directory."""
        target = self.path / safe_name(name)
        write_atomic(target, text)
        return target

    def write_files(self, folder: str, files: Mapping[str, bytes]) -> list[Path]:
        """Replace the derived files in ``folder`` (e.g. ``plots``) by ``files`` (name to
        content), each written atomically; files of the folder not named are removed."""
        base = self.path / safe_name(folder)
        targets = {base / safe_name(name): data for name, data in files.items()}
        for target, data in targets.items():
            write_atomic(target, data)
        if base.is_dir():
            for stale in base.iterdir():
                if stale.is_file() and stale not in targets:
                    stale.unlink()
        return list(targets)


def _ends_with_newline(handle: Any) -> bool:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1) == b"\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _number(text: str | None) -> float | int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)
