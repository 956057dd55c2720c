import hashlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pooch
import pytest

from harness.data.corpus import CACHE_ENV, CORPUS_ENV, CorpusSource, cache_path, locate, sha1_of
from harness.errors import ConfigError, CorpusError
from helpers import serve

TEXT = b"the time machine\n" * 50
SHA1 = hashlib.sha1(TEXT).hexdigest()
OTHER = b"another text entirely\n" * 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server serving ``corpus.txt`` (TEXT) from a temporary folder."""
    root = tmp_path / "served"
    (root / "other").mkdir(parents=True)
    (root / "corpus.txt").write_bytes(TEXT)
    (root / "other" / "corpus.txt").write_bytes(OTHER)

    with serve(root) as url:
        yield url


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(CORPUS_ENV, raising=False)
    return tmp_path / "cache"


def test_download_is_verified_and_cached(server: str, cache: Path, tmp_path: Path) -> None:
    source = CorpusSource(url=f"{server}/corpus.txt", sha1=SHA1)
    path = locate(source)
    assert path == cache_path(source.url) and path.read_bytes() == TEXT
    assert path.parent.parent == cache and path.name == "corpus.txt"
    # second call uses the cache even with the file gone from the server
    (tmp_path / "served" / "corpus.txt").unlink()
    assert locate(source) == path


def test_download_with_wrong_hash_is_removed_and_reported(server: str, cache: Path) -> None:
    source = CorpusSource(url=f"{server}/corpus.txt", sha1="0" * 40)
    with pytest.raises(CorpusError) as info:
        locate(source)
    message = str(info.value)
    assert "0" * 40 in message and SHA1 in message and "\n" not in message
    assert not cache_path(source.url).exists()


def test_urls_ending_in_the_same_name_do_not_share_a_cache_file(server: str) -> None:
    first = locate(CorpusSource(url=f"{server}/corpus.txt"))
    second = locate(CorpusSource(url=f"{server}/other/corpus.txt"))
    assert first != second and first.name == second.name == "corpus.txt"
    assert first.read_bytes() == TEXT and second.read_bytes() == OTHER


def test_file_cached_by_name_only_is_adopted_when_its_sha1_matches(cache: Path) -> None:
    url = "http://127.0.0.1:9/corpus.txt"  # nothing listens: only a cache hit succeeds
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(TEXT)
    assert locate(CorpusSource(url=url, sha1=SHA1)) == cache_path(url)
    assert cache_path(url).read_bytes() == TEXT and not (cache / "corpus.txt").exists()


def test_file_cached_by_name_only_is_ignored_without_a_sha1(cache: Path) -> None:
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(TEXT)
    with pytest.raises(CorpusError, match="cannot download"):
        locate(CorpusSource(url="http://127.0.0.1:9/corpus.txt"))
    assert (cache / "corpus.txt").read_bytes() == TEXT


def test_download_says_one_line_and_hides_poochs_messages(
        server: str, capfd: pytest.CaptureFixture[str]) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    pooch.get_logger().addHandler(handler)  # pooch's own logger, outside the root hierarchy
    try:
        locate(CorpusSource(url=f"{server}/corpus.txt"))  # no sha1: pooch advises a SHA256
        err = capfd.readouterr().err
        locate(CorpusSource(url=f"{server}/other/corpus.txt"), quiet=True)
    finally:
        pooch.get_logger().removeHandler(handler)
    assert err.splitlines() == [f"downloading {server}/corpus.txt to "
                                f"{cache_path(f'{server}/corpus.txt')}"]
    assert capfd.readouterr().err == "" and records == []


def test_offline_without_cache_says_how_to_use_a_local_file() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CorpusError, match="--corpus PATH") as info:
        locate(CorpusSource(url=f"http://127.0.0.1:{port}/corpus.txt", sha1=SHA1))
    assert "\n" not in str(info.value)


def test_cached_file_with_wrong_hash_is_refused() -> None:
    url = "http://127.0.0.1:9/corpus.txt"
    cache_path(url).parent.mkdir(parents=True)
    cache_path(url).write_bytes(b"tampered")
    with pytest.raises(CorpusError, match="cached corpus") as info:
        locate(CorpusSource(url=url, sha1=SHA1))
    assert SHA1 in str(info.value) and str(cache_path(url)) in str(info.value)


def test_local_file_overrides_download_and_is_verified(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "local.txt"
    local.write_bytes(TEXT)
    source = CorpusSource(url="http://127.0.0.1:9/corpus.txt", sha1=SHA1)
    assert locate(source, local) == local
    monkeypatch.setenv(CORPUS_ENV, str(local))
    assert locate(source) == local
    local.write_bytes(b"other text")
    with pytest.raises(CorpusError, match="expected " + SHA1):
        locate(source)


def test_corpus_env_never_replaces_a_tasks_own_path(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mine, canonical = tmp_path / "mine.txt", tmp_path / "timemachine.txt"
    mine.write_bytes(TEXT)
    canonical.write_bytes(OTHER)
    monkeypatch.setenv(CORPUS_ENV, str(canonical))
    assert locate(CorpusSource(path=mine, sha1=SHA1)) == mine
    assert locate(CorpusSource(url="http://127.0.0.1:9/x.txt", path=mine)) == mine
    assert locate(CorpusSource(path=mine), override=canonical) == canonical  # --corpus wins


def test_sha1_in_upper_case_is_accepted(tmp_path: Path, server: str) -> None:
    local = tmp_path / "local.txt"
    local.write_bytes(TEXT)
    assert locate(CorpusSource(path=local, sha1=SHA1.upper())) == local
    source = CorpusSource(url=f"{server}/corpus.txt", sha1=SHA1.upper())
    assert locate(source) == locate(source)  # downloaded, then taken from the cache


@pytest.mark.parametrize("sha1", ["abc", "g" * 40, SHA1 + "0", 123])
def test_malformed_sha1_is_a_one_line_config_error(sha1: object) -> None:
    with pytest.raises(ConfigError, match="40 hexadecimal digits") as info:
        CorpusSource(url="http://127.0.0.1:9/x.txt", sha1=sha1)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        locate(CorpusSource(path=tmp_path / "nope.txt"))


def test_a_missing_file_is_named_on_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "a\nb.txt"  # a task file's path may hold any character
    with pytest.raises(CorpusError) as caught:
        locate(CorpusSource(path=missing))
    assert str(caught.value) == f"corpus file not found: {str(missing)!r}"


def test_sha1_of_canonical_corpus(timemachine: Path) -> None:
    assert sha1_of(timemachine) == "090b5e7e70c295757f55df93cb0a180b9691891a"


def test_quiet_runs_say_nothing_of_the_download(server: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import main

    task = tmp_path / "served.toml"
    task.write_text(f'name = "served"\n[corpus]\nurl = "{server}/corpus.txt"\n'
                    '[generate]\nprefixes = ["the"]\nnum_preds = 3\n', encoding="utf-8")
    tiny = ["--task", str(task), "--models", "scratch", "--samplers", "sequential",
            "--epochs", "1", "--hiddens", "4", "--batch-size", "2", "--steps", "3",
            "--max-tokens", "200", "--valid-tokens", "0", "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, ["run", "-q", *tiny])
    assert result.exit_code == 0, result.output
    assert "downloading" not in result.stderr and cache_path(f"{server}/corpus.txt").is_file()
