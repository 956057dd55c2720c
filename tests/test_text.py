from pathlib import Path

import pytest

from harness.errors import CorpusError
from harness.text import Vocab, read_lines, tokenize


def test_preprocessing_is_d2ls(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("The Time-Machine, by H. G. Wells [1898]\n\n  I  \n", encoding="utf-8")
    assert read_lines(path) == ["the time machine by h g wells", "", "i"]


def test_canonical_corpus_gives_28_char_tokens(timemachine: Path) -> None:
    tokens = [t for line in tokenize(read_lines(timemachine)) for t in line]
    vocab = Vocab(tokens)
    assert len(vocab) == 28
    assert vocab.idx_to_token[:4] == ["<unk>", " ", "e", "t"]  # d2l's published order
    assert len(tokens) == 170580


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
