import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.corpus import CACHE_ENV, CORPUS_ENV, CorpusSource, locate, sha1_of
from harness.errors import CorpusError

TEXT = b"the time machine\n" * 50
SHA1 = hashlib.sha1(TEXT).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server serving ``corpus.txt`` (TEXT) from a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "corpus.txt").write_bytes(TEXT)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(CORPUS_ENV, raising=False)
    return tmp_path / "cache"


def test_download_is_verified_and_cached(server: str, cache: Path) -> None:
    source = CorpusSource(url=f"{server}/corpus.txt", sha1=SHA1)
    path = locate(source)
    assert path == cache / "corpus.txt" and path.read_bytes() == TEXT
    # second call uses the cache even with the server gone
    assert locate(CorpusSource(url="http://127.0.0.1:9/corpus.txt", sha1=SHA1)) == path


def test_download_with_wrong_hash_is_removed_and_reported(server: str, cache: Path) -> None:
    source = CorpusSource(url=f"{server}/corpus.txt", sha1="0" * 40)
    with pytest.raises(CorpusError) as info:
        locate(source)
    message = str(info.value)
    assert "0" * 40 in message and SHA1 in message and "\n" not in message
    assert not (cache / "corpus.txt").exists()


def test_offline_without_cache_says_how_to_use_a_local_file() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CorpusError, match="--corpus PATH") as info:
        locate(CorpusSource(url=f"http://127.0.0.1:{port}/corpus.txt", sha1=SHA1))
    assert "\n" not in str(info.value)


def test_cached_file_with_wrong_hash_is_refused(cache: Path) -> None:
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(b"tampered")
    with pytest.raises(CorpusError, match="cached corpus") as info:
        locate(CorpusSource(url="http://127.0.0.1:9/corpus.txt", sha1=SHA1))
    assert SHA1 in str(info.value) and str(cache / "corpus.txt") in str(info.value)


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


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        locate(CorpusSource(path=tmp_path / "nope.txt"))


def test_sha1_of_canonical_corpus(timemachine: Path) -> None:
    assert sha1_of(timemachine) == "090b5e7e70c295757f55df93cb0a180b9691891a"
