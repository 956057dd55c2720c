"""Shared pieces of the fuzz tests: the outcome checks, the known-bug list, the input counter
and the Hypothesis strategies (TOML documents, JSON values, byte mutations).

The property every fuzz test checks: an input the user types, or that the harness reads
back from disk, either works or is refused with ONE line (a :class:`HarnessError`, or exit
code 2 with one ``Error: ...`` line on the command line), never a traceback.

A bug the fuzzers have found is listed here (:data:`KNOWN_BUGS` with the innermost harness
frame it raises from, :data:`KNOWN_MULTILINE` with the shape of its message): a property
test that meets it counts it and goes on (so the suite stays green), and the bug's minimal
input is pinned by a ``xfail(raises=KnownBugHit, strict=True)`` test in the module that
found it, which turns red once the bug is fixed (then drop both) and fails outright if the
input breaks in some other way.
"""

from __future__ import annotations

import json
import math
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from harness.errors import HarnessError


def tests_conftest() -> Any:
    """tests/conftest.py as a module of its own name (``conftest`` is this folder's too),
    for its ``write_small_task``."""
    import importlib.util
    import sys

    name = "harness_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parents[1] / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


_REGISTRY: list[Any] = []


def registry() -> Any:
    """The built-in plugins' registry, loaded once (not a fixture: Hypothesis would print
    its long repr with every failing example)."""
    if not _REGISTRY:
        from harness.plugin.manager import load_registry

        _REGISTRY.append(load_registry())
    return _REGISTRY[0]


# ---------------------------------------------------------------------------------------
# counting

TRIED: Counter[str] = Counter()
"""Inputs each fuzz test ran (every call Hypothesis made, shrinking included)."""
OUTCOMES: Counter[tuple[str, str]] = Counter()
"""(what, outcome) -> count: how deep the inputs got (``ok``, ``refused``, ``known bug``)."""
KNOWN_HITS: Counter[str] = Counter()
"""How often each known bug was met by a property test."""

SCALE = float(os.environ.get("HARNESS_FUZZ_SCALE", "1"))
"""Multiplies every test's example budget (``HARNESS_FUZZ_SCALE=10`` for a long session)."""


def examples(n: int) -> int:
    """A test's ``max_examples``, scaled by :data:`SCALE`."""
    return max(1, round(n * SCALE))


def tried(name: str) -> None:
    TRIED[name] += 1


# ---------------------------------------------------------------------------------------
# known bugs


@dataclass(frozen=True)
class KnownBug:
    """A traceback the fuzzers found: an exception type raised with ``where`` (a
    ``module.py:function`` of harness) as its innermost harness frame."""

    id: str
    exception: type[BaseException] | tuple[type[BaseException], ...]
    where: str | tuple[str, ...]
    summary: str


KNOWN_BUGS: list[KnownBug] = []
"""The tracebacks found so far, listed below (each pinned by a strict xfail test in the
module whose fuzzer found it)."""


def known_bug(id: str, exception: type[BaseException] | tuple[type[BaseException], ...],
              where: str | tuple[str, ...], summary: str) -> KnownBug:
    bug = KnownBug(id, exception, where, summary)
    KNOWN_BUGS.append(bug)
    return bug


def harness_frames(error: BaseException) -> list[str]:
    """``module.py:function`` of each frame inside harness/ (or the built-in plugins) in
    ``error``'s traceback, innermost last."""
    frames = []
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if "harness" in path.parts or "harness_builtins" in path.parts:
            frames.append(f"{path.name}:{frame.name}")
    return frames


def innermost(error: BaseException) -> str:
    frames = harness_frames(error)
    return frames[-1] if frames else "?"


def _known(error: BaseException) -> KnownBug | None:
    where = innermost(error)
    for bug in KNOWN_BUGS:
        places = (bug.where,) if isinstance(bug.where, str) else bug.where
        if isinstance(error, bug.exception) and where in places:
            return bug
    return None


class Traceback(AssertionError):
    """The property is broken: an input gave a traceback, not a one-line error."""


def unexpected(error: BaseException, what: str) -> Traceback:
    text = "".join(traceback.format_exception(error))
    return Traceback(f"{what} raised {type(error).__name__} (innermost harness frame: "
                     f"{innermost(error)}), not a one-line error:\n{text}")


@dataclass(frozen=True)
class KnownMultiline:
    """A refusal the fuzzers found that spans several lines: its message matches ``pattern``."""

    id: str
    pattern: str
    summary: str


KNOWN_MULTILINE: list[KnownMultiline] = []


def known_multiline(id: str, pattern: str, summary: str) -> KnownMultiline:
    bug = KnownMultiline(id, pattern, summary)
    KNOWN_MULTILINE.append(bug)
    return bug


# ---------------------------------------------------------------------------------------
# the bugs found and not yet fixed: none now. A new one is listed here (known_bug or
# known_multiline) and pinned by a strict xfail test in the module that found it; once
# fixed, its entry goes and its pinned input stays as an ordinary test.


class KnownBugHit(AssertionError):
    """Raised by the xfail tests when their bug is still there (``xfail(raises=...)``): any
    other failure of those tests is a real one."""


def _multiline(message: str) -> bool:
    return bool(re.search(r"[\r\n]", message.strip()))


def _hit(bug: KnownBug | KnownMultiline, error: BaseException) -> bool:
    if isinstance(bug, KnownMultiline):
        return isinstance(error, HarnessError) and _multiline(str(error)) \
            and bool(re.search(bug.pattern, str(error), flags=re.DOTALL))
    return _known(error) is bug


def still_broken(bug: KnownBug | KnownMultiline, call: Callable[[], Any]) -> None:
    """Run a bug's minimal input: raise :class:`KnownBugHit` if ``bug`` shows, fail on any
    other traceback or multi-line error, pass when it works or is refused with one line."""
    try:
        call()
    except Exception as error:  # noqa: BLE001
        if _hit(bug, error):
            raise KnownBugHit(f"{bug.id}: {bug.summary}") from error
        if isinstance(error, HarnessError):
            assert not _multiline(str(error)), str(error)
            return
        raise unexpected(error, bug.id) from None


def cli_still_broken(bug: KnownBug, result: Any) -> None:
    """:func:`still_broken` for a ``CliRunner`` result."""
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        if _hit(bug, error):
            raise KnownBugHit(f"{bug.id}: {bug.summary}") from error
        raise unexpected(error, bug.id)
    cli_outcome(result, bug.id, ok_codes=(0, 3))


def check_one_line(message: str, what: str) -> None:
    """A refusal is one non-empty line (a terminal breaks lines at CR and LF); a known
    multi-line message is counted instead."""
    if os.environ.get("HARNESS_FUZZ_LOG"):  # every refusal, to see how deep inputs get
        with open(os.environ["HARNESS_FUZZ_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{what}\t{message!r}\n")
    assert message.strip(), f"{what}: an empty error message"
    if re.search(r"[\r\n]", message.strip()):
        for bug in KNOWN_MULTILINE:
            if re.search(bug.pattern, message, flags=re.DOTALL):
                KNOWN_HITS[bug.id] += 1
                return
        raise AssertionError(f"{what}: the error spans several lines: {message!r}")


def library_call(call: Callable[[], Any], what: str,
                 refusals: tuple[type[BaseException], ...] = (HarnessError,)) -> Any:
    """``call()``'s value, or None when it refused with one line; a known bug is counted
    (and None returned); anything else fails the test."""
    try:
        value = call()
    except refusals as error:
        check_one_line(str(error), what)
        OUTCOMES[what, "refused"] += 1
        return None
    except Exception as error:  # noqa: BLE001 - the point: nothing else may escape
        bug = _known(error)
        if bug is None:
            raise unexpected(error, what) from None
        KNOWN_HITS[bug.id] += 1
        OUTCOMES[what, "known bug"] += 1
        return None
    OUTCOMES[what, "ok"] += 1
    return value


def cli_outcome(result: Any, what: str, ok_codes: Iterable[int] = (0,)) -> str | None:
    """Check a ``CliRunner`` result: exit 2 with one ``Error:`` line (returned), an exit code
    in ``ok_codes`` (None returned), or a known bug (``"known:<id>"``); never a traceback."""
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        bug = _known(error)
        if bug is None:
            raise unexpected(error, what)
        KNOWN_HITS[bug.id] += 1
        OUTCOMES[what, "known bug"] += 1
        return f"known:{bug.id}"
    output = result.output
    assert "Traceback" not in output, f"{what}: a traceback in the output:\n{output}"
    if result.exit_code == 2:
        check_one_line(output, what)
        lines = [line for line in re.split(r"[\r\n]", output) if line.strip()]
        assert lines[0].startswith("Error: ") and (
            len(lines) == 1 or any(re.search(b.pattern, output, flags=re.DOTALL)
                                   for b in KNOWN_MULTILINE)), \
            f"{what}: exit 2 without exactly one 'Error:' line:\n{output}"
        OUTCOMES[what, "refused"] += 1
        return lines[0]
    assert result.exit_code in tuple(ok_codes), \
        f"{what}: exit code {result.exit_code}:\n{output}"
    OUTCOMES[what, f"exit {result.exit_code}"] += 1
    return None


# ---------------------------------------------------------------------------------------
# values

def weighted(valid: st.SearchStrategy, other: st.SearchStrategy, *, none: bool = False,
             odds: int = 30) -> st.SearchStrategy:
    """``valid`` ``odds`` times in ``odds + 2``, else ``other`` or (when ``none``) None, so
    that most inputs get deep into the checks, each part sometimes wrong."""
    choices = [valid] * odds + [other] + [st.none() if none else other]
    return st.integers(0, len(choices) - 1).flatmap(lambda i: choices[i])


printable = st.characters(codec="utf-8", exclude_categories=("Cs",))
short_text = st.text(printable, max_size=12)
names = st.sampled_from(["scratch", "nnrnn", "gru", "lstm", "sequential", "random",
                         "sequential-reset", "all", "", " ", "Scratch", "../x", "a/b"])
fields = st.sampled_from(["epochs", "batch_size", "num_steps", "num_hiddens", "num_layers",
                          "dropout", "lr", "clip", "max_tokens", "valid_tokens", "eval_every",
                          "precision", "hidden", "layers", "steps", "batch-size", "nope",
                          "Epochs", ""])
huge = st.sampled_from([2**63 - 1, 2**63, -2**63 - 1, 2**64, 10**309, -10**309, 10**400])
"""Integers past int64 and past float range (TOML and JSON integers are unbounded)."""
numbers = st.one_of(
    st.integers(-3, 40), st.integers(), huge,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e308, 5e-324, math.nan, math.inf]),
)
scalars = st.one_of(st.booleans(), numbers, short_text, st.none())

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10**30, -1, 0]),
              st.floats(allow_nan=False, allow_infinity=False), short_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(short_text, inner, max_size=4)),
    max_leaves=12,
)
"""Any JSON value (the standard library also writes and reads NaN and Infinity; see
:func:`json_text`)."""


@st.composite
def json_text(draw: st.DrawFn, value: Any = None) -> str:
    """``value`` (or a drawn JSON value) as JSON text, sometimes with NaN/Infinity in it."""
    if value is None:
        value = draw(json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:
        text = text.replace("0", draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])), 1)
    return text


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) into a JSON value, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += json_paths(item, (*prefix, index))
    return paths


def json_replace(value: Any, path: tuple, new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: json_replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = json_replace(copy[head], rest, new)
    return copy


def json_delete(value: Any, path: tuple) -> Any:
    """A copy of ``value`` without the item at ``path`` (non-empty)."""
    head, rest = path[0], path[1:]
    if rest:
        copy = dict(value) if isinstance(value, dict) else list(value)
        copy[head] = json_delete(value[head], rest)
        return copy
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [v for i, v in enumerate(value) if i != head]


@st.composite
def mutated_json(draw: st.DrawFn, original: Any) -> str:
    """``original`` with one item replaced (by a drawn JSON value, often of another type)
    or deleted, as JSON text."""
    path = draw(st.sampled_from(json_paths(original)))
    if path and draw(st.integers(0, 3)) == 0:
        return json.dumps(json_delete(original, path))
    new = draw(st.one_of(scalars, json_values))
    return draw(json_text(json_replace(original, path, new)))


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few byte-level edits: truncation, deletions, insertions, flips."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "delete", "insert", "flip", "splice"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=8),
                                         st.sampled_from([b"\n", b"\r", b",", b'"', b"{", b"]",
                                                          b"\xff", b"\xe2\x80\xa8", b"\x00"])))
        elif kind == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "splice" and data:
            start = draw(st.integers(0, len(data)))
            data[at:at] = data[start:start + draw(st.integers(1, 32))]
    return bytes(data)


def corrupt_file(draw: st.DrawFn, original: bytes, *, is_json: bool) -> bytes | None:
    """New contents for a run-directory file (None: delete it)."""
    modes = ["bytes", "mutate", "empty", "delete", "text"] + (["json", "value"] * 3 if is_json
                                                              else [])
    mode = draw(st.sampled_from(modes))
    if mode == "bytes":
        return draw(st.binary(max_size=64))
    if mode == "mutate":
        return draw(mutated_bytes(original))
    if mode == "empty":
        return b""
    if mode == "delete":
        return None
    if mode == "text":
        return draw(st.text(printable, max_size=40)).encode("utf-8")
    if mode == "value":
        return draw(json_text()).encode("utf-8")
    return draw(mutated_json(json.loads(original))).encode("utf-8")


# ---------------------------------------------------------------------------------------
# TOML


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:  # TOML has no null: the key is left out
        raise ValueError
    return value.isoformat()  # dates and times


def toml_document(doc: dict[str, Any]) -> str:
    """``doc`` as TOML: scalars first, then a ``[table]`` per mapping and ``[[name]]`` per
    entry of a list of mappings; None values are left out."""
    lines, tables = [], []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append(f"[{toml_key(key)}]")
            tables += [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()
                       if v is not None]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                tables.append(f"[[{toml_key(key)}]]")
                tables += [f"{toml_key(k)} = {toml_value(v)}" for k, v in entry.items()
                           if v is not None]
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


toml_scalars = st.one_of(
    st.booleans(), numbers, huge, short_text,
    st.dates(), st.times(), st.datetimes(),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)), max_leaves=6)
