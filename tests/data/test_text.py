import re
from pathlib import Path

import pytest

from harness.errors import CorpusError
from harness.data.text import Vocab, read_lines, tokenize


def test_preprocessing_is_d2ls(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("The Time-Machine, by H. G. Wells [1898]\n\n  I  \n", encoding="utf-8")
    assert read_lines(path) == ["the time machine by h g wells", "", "i"]


def d2l_read_time_machine(path: Path) -> list[str]:
    """d2l's ``read_time_machine`` (§8.2), verbatim but for the file it opens."""
    with open(path, "r", encoding="utf-8") as f:
        lines = f.readlines()
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines]


def test_lines_break_only_where_d2ls_readlines_breaks_them(tmp_path: Path) -> None:
    # str.splitlines would also break at \x0c, \x0b, \x1c-\x1e, \x85, \u2028, \u2029
    path = tmp_path / "t.txt"
    path.write_bytes("The Time\x0cMachine\nby H G\x85Wells\r\nof\x0b\x1c\x1d\x1ethe\r"
                     "future\u2028and\u2029past\n".encode("utf-8"))
    assert read_lines(path) == d2l_read_time_machine(path) == [
        "the time machine", "by h g wells", "of the", "future and past"]


def test_canonical_corpus_gives_28_char_tokens(timemachine: Path) -> None:
    tokens = [t for line in tokenize(read_lines(timemachine)) for t in line]
    vocab = Vocab(tokens)
    assert len(vocab) == 28
    assert vocab.idx_to_token[:4] == ["<unk>", " ", "e", "t"]  # d2l's published order
    assert len(tokens) == 170580
    assert read_lines(timemachine) == d2l_read_time_machine(timemachine)


def test_vocab_orders_by_frequency_then_first_appearance() -> None:
    vocab = Vocab(list("bbaacccd"))
    assert vocab.idx_to_token == ["<unk>", "c", "b", "a", "d"]
    assert vocab.encode(list("abz")) == [3, 2, 0]
    assert vocab.decode([1, 2, 0]) == "cb<unk>"


def test_word_tokenizer() -> None:
    assert tokenize(["the time machine"], "word") == [["the", "time", "machine"]]


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty"), (b"  \n\n", "empty"), (b"1234 !!\n", "no letters"),
     (b"abc \xff\xfe", "UTF-8")],
)
def test_bad_corpus_is_one_line_error_naming_file(tmp_path: Path, content: bytes,
                                                  problem: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=problem) as info:
        read_lines(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
