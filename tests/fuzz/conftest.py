"""Fixtures and settings of the fuzz tests (``pytest tests/fuzz``).

Hypothesis runs derandomized and without an example database by default, so the suite
gives the same inputs on every run and writes nothing into the repository; set
``HARNESS_FUZZ_PROFILE=explore`` for fresh random inputs and ``HARNESS_FUZZ_SCALE=N`` for
N times the examples. The summary at the end says how many inputs were tried.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

import fuzzkit

write_small_task = fuzzkit.tests_conftest().write_small_task

_HOME = tempfile.mkdtemp(prefix="harness-fuzz-hypothesis-")
set_hypothesis_home_dir(_HOME)  # its caches go here, not in the repository's .hypothesis/

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much,
                                      HealthCheck.large_base_example])
settings.register_profile("fuzz", derandomize=True, **_COMMON)
settings.register_profile("explore", derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("HARNESS_FUZZ_PROFILE", "fuzz"))


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="session", autouse=True)
def offline(fuzz_root: Path) -> Iterator[None]:
    """No download, ever: a task naming only a URL reads $HARNESS_CORPUS (the small
    corpus), the cache is a private folder, and pooch itself is refused. One torch thread:
    on a busy two-core machine two threads spin-waiting on each other make the little
    training a resume does a hundred times slower."""
    (fuzz_root / "env").mkdir()
    task = write_small_task(fuzz_root / "env")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CORPUS", str(task.parent / "small.txt"))
        patch.setenv("HARNESS_CACHE_DIR", str(fuzz_root / "cache"))

        def no_download(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"the fuzz tests must not download anything: {args}")

        import pooch

        patch.setattr(pooch, "retrieve", no_download)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the few combinations a resume trains: no thread spin-waits
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def task_dir(fuzz_root: Path) -> Path:
    """A folder holding the small corpus and task (``small.txt``, ``small.toml``)."""
    folder = fuzz_root / "task"
    folder.mkdir()
    write_small_task(folder)
    return folder


@pytest.fixture(scope="session")
def finished_run(fuzz_root: Path, task_dir: Path) -> Path:
    """A real finished run, made once: scratch with sequential, seeds 0 and 1, two epochs,
    checkpoints saved (so vocab.json exists). Tests copy it before they corrupt it."""
    import harness

    result = harness.run(task=str(task_dir / "small.toml"), models=["scratch"],
                         samplers=["sequential"], seeds=[0, 1], epochs=2, quiet=True,
                         device="cpu", save_checkpoints=True,
                         output_dir=fuzz_root / "runs")
    assert result.status == "complete"
    return result.path


def pytest_sessionfinish() -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not fuzzkit.TRIED:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fuzz inputs")
    for name, count in sorted(fuzzkit.TRIED.items()):
        write(f"{count:6d}  {name}")
    write(f"{sum(fuzzkit.TRIED.values()):6d}  inputs tried in all")
    outcomes: dict[str, list[str]] = {}
    for (what, outcome), count in sorted(fuzzkit.OUTCOMES.items()):
        outcomes.setdefault(what, []).append(f"{outcome} {count}")
    for what, counts in outcomes.items():
        write(f"        {what}: {', '.join(counts)}")
    for bug, count in sorted(fuzzkit.KNOWN_HITS.items()):
        write(f"known bug {bug}: met {count} times")
