"""Shared fixtures. Tests never see plugins installed in the environment."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HARNESS_DISABLE_PLUGIN_AUTOLOAD"] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # fake_plugins, from the tests of every stage
sys.path.insert(0, str(REPO / "benchmarks"))  # d2l_seed: the seed's own code, the reference
SHARED_CORPUS = REPO.parent / "shared" / "data" / "timemachine.txt"
TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two torch intra-op threads, so a CPU fp32 batch of 16 or more rows runs as two row
    blocks (``harness_builtins.kernels.batch_parts``), as on the 2-core machines."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def timemachine() -> Path:
    """The canonical corpus (../shared/data/timemachine.txt, as CI lays it out)."""
    if not SHARED_CORPUS.is_file():
        pytest.skip(f"canonical corpus not found at {SHARED_CORPUS}")
    return SHARED_CORPUS


def write_small_corpus(folder: Path) -> Path:
    """A small corpus of our own: enough for a few minibatches of 4 x 5 tokens."""
    text = "\n".join(
        f"The Time Traveller, line {i}: a quick brown fox jumps over the lazy dog!"
        for i in range(40)
    )
    path = folder / "small.txt"
    path.write_text(text, encoding="utf-8")
    return path


def write_small_task(folder: Path) -> Path:
    """A task file (no code) over the small corpus in ``folder``, with a tiny recipe."""
    write_small_corpus(folder)
    path = folder / "small.toml"
    path.write_text(
        'name = "small"\ntokenizer = "char"\n[corpus]\npath = "small.txt"\n'
        "[recipe]\nepochs = 3\nbatch_size = 4\nnum_steps = 5\nnum_hiddens = 16\n"
        "max_tokens = 1500\nvalid_tokens = 300\neval_every = 1\n"
        '[generate]\nprefixes = ["the time"]\nnum_preds = 10\n'
        '[defaults]\nmodels = ["scratch", "nnrnn"]\n'
        'samplers = ["sequential", "random", "sequential-reset"]\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """The small corpus, in the test's own folder."""
    return write_small_corpus(tmp_path)


@pytest.fixture
def small_task(tmp_path: Path) -> Path:
    """The small task file, in the test's own folder."""
    return write_small_task(tmp_path)


@pytest.fixture(scope="module")
def module_small_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small task file, shared by one test module (for runs that several tests read)."""
    return write_small_task(tmp_path_factory.mktemp("small-task"))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for fake installed distributions (fake_plugins.make_distribution);
    worker processes see it too (spawn passes sys.path, subprocesses get PYTHONPATH)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]
    importlib.invalidate_caches()
