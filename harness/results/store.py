"""The run directory: the one place results live, written so that nothing is lost.

Layout of ``<root>/<run_id>/``::

    manifest.json          settings, environment, plugins, status (rewritten atomically)
    records.jsonl          one JSON line per finished combination, appended and fsynced
    curves/<key>.csv       curve of each combination, a row per epoch (d2l's task) or per
                           validation (a held-out task); written before its record
    errors/<key>.txt       the traceback of a combination that failed (or why it crashed)
    checkpoints/<key>.pt   trained weights (``--save-checkpoints``): a state_dict only
    checkpoints/vocab.json the vocabulary the checkpoints were trained with
    report.md              derived from the files above; can be regenerated at any time
    .lock                  held (flock) by the one process writing the run

A record line torn by a kill is detected on reading and skipped with a warning, and the
next record starts on a line of its own. JSON never holds a bare NaN or Infinity:
non-finite numbers are stored as null.

Other files are written whole (:func:`write_atomic`, following the umask) to
``.harness-tmp-<hex>.<name>`` and renamed; taking the run's lock removes such temporary
files (only those) that a killed writer left. A run directory never makes the harness write
or delete outside it: a symbolic link in place of one of its files or folders (``plots``,
``records.jsonl``, ...) is refused with a ConfigError naming it, never followed, never
removed (the user's, to replace by a real one); the run directory itself may be a link.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import ConfigError
from harness.names import safe_name
from harness.numbers import is_finite
from harness.results.schema import Manifest, Record

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"
REPORT = "report.md"
FOLDERS = ("curves", "errors", "checkpoints", "plots")
TEMP_PREFIX = ".harness-tmp-"
"""How :func:`write_atomic`'s temporary files begin: ``.harness-tmp-<12 hex>.<name>``."""
TEMP_PATTERN = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{12}\..*", re.DOTALL)
RUN_ID_LABEL = 100  # the longest task label a run id holds


def write_atomic(path: Path, data: str | bytes, *, root: Path | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    Nothing is written through a symbolic link: ConfigError if ``path`` is one, or if a
    folder between ``root`` and ``path`` is (without ``root``, the folder holding
    ``path``), so a link planted in a run directory cannot send a write outside it.
    The file's mode follows the umask (``0o666 & ~umask``), as ``open`` gives."""
    path = Path(path)
    _refuse_links(path, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    for attempt in range(3):  # again if a process taking the lock took it for stale
        tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(6)}.{path.name[:100]}"
        handle = open(tmp, "wb", opener=_exclusive)  # noqa: SIM115 (closed below)
        try:
            with handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            return
        except BaseException as error:
            tmp.unlink(missing_ok=True)
            if not isinstance(error, FileNotFoundError) or attempt == 2:
                raise


def _exclusive(file: str, flags: int) -> int:
    """A new file (not a link), mode 0o666 less the umask (``mkstemp`` would give 0o600)."""
    return os.open(file, flags | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _refuse_links(path: Path, root: Path | None) -> None:
    """ConfigError naming the first symbolic link among ``path`` and its folders below
    ``root`` (without ``root``: ``path`` and the folder holding it)."""
    inside = path.parent.relative_to(root).parts if root is not None else ("",)
    folders = [path.parents[n] for n in reversed(range(len(inside)))]
    for candidate in [*folders, path]:
        if candidate.is_symlink():
            kind = "folder" if candidate.is_dir() else "file"
            raise ConfigError(f"{candidate} is a symbolic link; the harness does not write "
                              f"through links in a run directory (replace it by a real {kind})")


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
    return f"{stamp}-{safe_name(label, RUN_ID_LABEL)}-{suffix}" if label else f"{stamp}-{suffix}"


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
        store = cls(path)
        try:
            store.write_manifest(manifest.with_changes(run_id=path.name))
        except BaseException:  # no run directory without a manifest (a full disk, Ctrl-C)
            shutil.rmtree(path, ignore_errors=True)
            raise
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
        the lock when its holder dies, however it dies.

        Before anything is written, ConfigError if one of the run's files or folders is a
        symbolic link (see the module's docstring); once the lock is held, temporary files
        a killed writer left (``.harness-tmp-*``) are removed."""
        for name in (LOCK, MANIFEST, RECORDS, REPORT, *FOLDERS):
            _refuse_links(self.path / name, self.path)
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.path} is being written by another harness process "
                              f"(it holds {LOCK})") from None
        try:
            self.remove_stale_temporaries()
            yield
        finally:
            lock.release()

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove (and return) the temporary files of writes whose process was killed, in
        the run directory and its folders: regular files named as :func:`write_atomic`
        names them, links not followed. Hold the lock: the only other writer, ``harness
        report``, writes a file again if it loses its temporary one."""
        removed, folders = [], [self.path]
        with os.scandir(self.path) as entries:
            folders += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        for folder in folders:
            with os.scandir(folder) as entries:
                stale = [Path(e.path) for e in entries
                         if e.is_file(follow_symlinks=False) and TEMP_PATTERN.fullmatch(e.name)]
            for path in stale:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # manifest ---------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The run's manifest; ConfigError naming the file if it is not one."""
        path = self.path / MANIFEST
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
            return Manifest.from_json(data, run_id=self.path.name)
        except OSError as error:
            raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
        except (ValueError, TypeError, AttributeError) as error:  # JSON, UTF-8 or shape
            raise ConfigError(f"{path}: not a harness manifest ({error})") from None
        except RecursionError:  # JSON nested deeper than Python's stack
            raise ConfigError(f"{path}: not a harness manifest (nested too deeply)") from None

    def write_manifest(self, manifest: Manifest) -> None:
        write_atomic(self.path / MANIFEST, to_json(manifest.to_json(), indent=2) + "\n",
                     root=self.path)

    def update_manifest(self, **changes: Any) -> None:
        self.write_manifest(self.manifest().with_changes(**changes))

    # records ----------------------------------------------------------------------------
    def error_file(self, key: str) -> Path:
        """Where the traceback of combination ``key`` is kept, if it failed."""
        return self.path / "errors" / f"{safe_name(key)}.txt"

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
            write_atomic(self.path / "curves" / f"{key}.csv", _csv(rows), root=self.path)
        if traceback:
            write_atomic(self.error_file(record.key), traceback, root=self.path)
        line = (to_json(record.to_json()) + "\n").encode("utf-8")
        _refuse_links(self.path / RECORDS, self.path)
        with open(self.path / RECORDS, "a+b", opener=_no_follow) as handle:
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
            except (ValueError, TypeError, AttributeError, RecursionError):
                warnings.warn(f"{path}:{number}: skipping a torn or corrupt record line",
                              stacklevel=2)
                continue
            found[record.key] = record
        return list(found.values())

    def curve(self, key: str) -> list[dict[str, Any]]:
        """The curve of one combination (empty if none was stored); ConfigError naming the
        file if it is not UTF-8 CSV of numbers with whole epochs that increase row by row
        (d2l's task: one row per epoch), or, when it has a ``tokens`` column (a held-out
        task: one row per validation), whole token counts that increase row by row and
        epochs that never decrease."""
        path = self.path / "curves" / f"{safe_name(key)}.csv"
        if not path.is_file():
            return []
        try:
            text = path.read_bytes().decode("utf-8")
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = [{k: _number(v) for k, v in row.items()} for row in reader]
            _check_curve(rows, by_tokens="tokens" in (reader.fieldnames or ()))
        except OSError as error:
            raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
        except (ValueError, TypeError, csv.Error) as error:
            raise ConfigError(f"{path}: not a curve ({error})") from None
        return rows

    def write_text(self, name: str, text: str) -> Path:
        """Write a derived file (e.g. ``report.md``) atomically inside the run directory."""
        target = self.path / safe_name(name)
        write_atomic(target, text, root=self.path)
        return target

    def write_files(self, folder: str, files: Mapping[str, bytes]) -> list[Path]:
        """Replace the derived files in ``folder`` (e.g. ``plots``) by ``files`` (name to
        content), each written atomically; files of the folder not named are removed.
        ConfigError before any change if ``folder`` or one of the files is a symbolic
        link (never followed nor removed); other links in the folder are left alone."""
        base = self.path / safe_name(folder)
        targets = {base / safe_name(name): data for name, data in files.items()}
        for target in [base, *targets]:
            _refuse_links(target, self.path)
        for target, data in targets.items():
            write_atomic(target, data, root=self.path)
        if base.is_dir():
            for stale in base.iterdir():
                if (stale.is_file() and not stale.is_symlink() and stale not in targets
                        and not TEMP_PATTERN.fullmatch(stale.name)):
                    stale.unlink()
        return list(targets)


def _check_curve(rows: list[dict[str, Any]], *, by_tokens: bool) -> None:
    """ValueError unless the rows' epochs are whole numbers that increase (``by_tokens``:
    never decrease, and the whole token counts increase instead)."""
    if not rows:  # the store writes a curve file only for a curve with rows
        raise ValueError("it has no rows")
    epochs = [row.get("epoch") for row in rows]
    if not all(isinstance(e, int) for e in epochs):
        raise ValueError("its epoch column is missing or not whole numbers")
    if not by_tokens:
        if any(a >= b for a, b in zip(epochs, epochs[1:])):
            raise ValueError("its epochs do not increase")
        return
    if any(a > b for a, b in zip(epochs, epochs[1:])):
        raise ValueError("its epochs decrease")
    tokens = [row.get("tokens") for row in rows]
    if not all(isinstance(t, int) for t in tokens):
        raise ValueError("its tokens column has a cell that is missing or not a whole number")
    if any(a >= b for a, b in zip(tokens, tokens[1:])):
        raise ValueError("its tokens do not increase")


def _no_follow(file: str, flags: int) -> int:
    """Open ``records.jsonl``, never through a link (closing the gap after the check)."""
    return os.open(file, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _ends_with_newline(handle: Any) -> bool:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1) == b"\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _number(text: Any) -> float | int | None:
    if text is None or text == "":
        return None
    if not isinstance(text, str):  # a row longer than the header
        raise ValueError("a row has more cells than the header")
    try:
        number = int(text)
    except ValueError:
        return float(text)
    if not is_finite(number):  # no curve the harness writes: the report's charts need floats
        raise ValueError("a cell holds an integer too large for a float")
    return number
