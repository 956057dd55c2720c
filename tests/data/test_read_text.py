"""read_text: a corpus as published, for models that read raw characters or bytes."""

from pathlib import Path

import pytest

from harness.data.text import read_text
from harness.errors import CorpusError

RAW = "First Citizen:\r\nYou are all resolved rather to die than to famish?\n\tAll: Résolu.\n"


def test_raw_is_the_utf8_text_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(RAW.encode("utf-8"))
    assert read_text(path, "raw") == RAW  # case, punctuation, \r\n, tabs, accents kept


def test_bytes_is_one_character_per_byte(tmp_path: Path) -> None:
    data = "Résolu".encode("utf-8") + b"\xff\xfe<page>\x00"  # invalid UTF-8 too
    path = tmp_path / "enwik8"
    path.write_bytes(data)
    text = read_text(path, "bytes")
    assert len(text) == len(data) and [ord(c) for c in text] == list(data)
    assert text.encode("latin-1") == data


def test_raw_refuses_invalid_utf8_in_one_line_naming_the_file_and_the_way_out(
        tmp_path: Path) -> None:
    path = tmp_path / "enwik8"
    path.write_bytes(b"ok " + b"\xe2\x82" + b" cut")
    with pytest.raises(CorpusError) as error:
        read_text(path, "raw")
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "byte 3" in message
    assert 'text = "bytes"' in message


@pytest.mark.parametrize("mode", ["raw", "bytes"])
def test_empty_or_missing_file_is_a_corpus_error(tmp_path: Path, mode: str) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        read_text(empty, mode)
    with pytest.raises(CorpusError, match="cannot read"):
        read_text(tmp_path / "missing.txt", mode)


def test_unknown_mode(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="choose from: raw, bytes"):
        read_text(path, "d2l")
