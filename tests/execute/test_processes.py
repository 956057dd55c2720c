"""The process executor: same numbers as serial, and a dying or hanging plugin costs only
its own combination. Misbehaving plugins are fake installed distributions, which the
spawned workers load through the same registry loader as the driver."""

import json
import signal
from pathlib import Path

import pytest

from harness import hookimpl
from harness import run
from harness.plugin.contracts import ModelSpec
from harness.errors import ConfigError
from harness.plugin.manager import load_registry
from harness.execute.processes import (ProcessExecutor, exit_reason, follow_share, split_cores,
                               threads_per_worker)
from harness.machine.determinism import VARIABLE
from harness.results.store import RunStore

from fake_plugins import IN_TURN, SLOW_SCRATCH, make_distribution

COLUMNS = ["model", "sampler", "seed", "status", "train_ppl", "valid_ppl", "num_params"]

CRASHERS = """
    import ctypes
    import os
    import resource
    import signal
    import time

    import torch

    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec


    def exits(vocab_size, settings, device):
        os._exit(3)


    def segfaults(vocab_size, settings, device):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        ctypes.string_at(0)


    def oom_killed(vocab_size, settings, device):
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


    def hangs(vocab_size, settings, device):
        time.sleep(3600)


    def hogs(vocab_size, settings, device):
        # Out of memory, safely: cap this process's address space just above what it
        # uses, then ask for 4 GB more. The cap stays with the process.
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + (256 << 20), resource.RLIM_INFINITY))
        return torch.zeros(1 << 30)


    @hookimpl
    def register_models(register):
        for name, factory in [("exits", exits), ("segfaults", segfaults),
                              ("oom-killed", oom_killed), ("hangs", hangs), ("hogs", hogs)]:
            register(ModelSpec(name, factory))
"""


@pytest.fixture
def crashers(site: Path):
    make_distribution(site, "fake-crashers", "0.1", "fake_crashers", CRASHERS)
    return load_registry(autoload=True)


def statuses(table) -> dict[str, str]:
    return dict(zip(table.model, table.status))


def test_threads_are_split_between_workers() -> None:
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(3, cores=16) == 5
    assert threads_per_worker(8, cores=2) == 1


def test_cores_are_split_between_the_busy_workers() -> None:
    assert split_cores(2, 1) == [2]
    assert split_cores(2, 2) == [1, 1]
    assert split_cores(5, 2) == [3, 2]
    assert split_cores(2, 3) == [1, 1, 1]


def test_a_worker_takes_up_the_share_the_driver_set(monkeypatch) -> None:
    import multiprocessing

    import torch

    import harness.execute.processes

    warmed: list[int] = []
    monkeypatch.setattr(harness.execute.processes, "warm_up_math",
                        lambda: warmed.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    share = multiprocessing.get_context("spawn").RawValue("i", 1)
    try:
        torch.set_num_threads(1)
        follow_share(share)
        assert warmed == []  # unchanged: nothing to do
        share.value = 2
        follow_share(share)
        assert torch.get_num_threads() == 2 and warmed == [2]  # warmed up on the new count
    finally:
        torch.set_num_threads(threads)


def test_idle_cores_are_lent_only_in_reproducible_mode(monkeypatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    assert not ProcessExecutor(jobs=2).lends_cores
    monkeypatch.setenv(VARIABLE, "AUTO,STRICT")  # harness run --reproducible
    assert ProcessExecutor(jobs=2).lends_cores
    assert ProcessExecutor(jobs=2).describe()["lend_idle_cores"] is True
    assert not ProcessExecutor(jobs=2, lend_cores=False).lends_cores


@pytest.mark.parametrize("lend", [True, False])
def test_the_last_combination_takes_up_the_cores_of_a_finished_worker(
        lend: bool, site: Path, small_task: Path, tmp_path: Path) -> None:
    # leaves is done within stays's first epoch; from then on stays trains alone, on both
    # cores if they are lent, on its own one if not. The order is made by the models
    # waiting on each other (files, and the share of cores the driver sets), not by how
    # long anything takes, so a loaded machine cannot change it.
    out = tmp_path / "out"
    make_distribution(site, "fake-in-turn", "0.1", "fake_in_turn",
                      IN_TURN.format(runs=str(out), started=str(out / "started"),
                                     leaves="scratch"))
    result = run(models=["stays", "leaves"], samplers=["sequential"],
                 task=str(small_task), output_dir=out, quiet=True, epochs=2,
                 registry=load_registry(autoload=True),
                 executor=ProcessExecutor(jobs=2, cores=2, lend_cores=lend))
    assert result.status == "complete"
    assert (out / "started").exists()  # the models did take turns
    store = RunStore(result.path)
    threads = {r.model: [p["threads"] for p in store.curve(r.key)]
               for r in store.records()}
    assert threads["leaves"] == [1, 1]
    assert threads["stays"] == [1, 2 if lend else 1]
    assert {r.torch_threads for r in store.records()} == {1}  # what each started on


def test_a_model_whose_numbers_follow_the_threads_is_lent_no_cores(
        site: Path, small_task: Path, tmp_path: Path) -> None:
    make_distribution(site, "fake-slow", "0.1", "fake_slow", SLOW_SCRATCH.format(delay=0.02))
    result = run(models=["slow-threaded", "nnrnn"], samplers=["sequential"],
                 task=str(small_task), output_dir=tmp_path, quiet=True, epochs=2,
                 registry=load_registry(autoload=True),
                 executor=ProcessExecutor(jobs=2, cores=2, lend_cores=True))
    store = RunStore(result.path)
    records = {r.model: r for r in store.records()}
    threaded = records["slow-threaded"]
    assert threaded.status == "ok"
    assert threaded.thread_dependent_parameters == ("W_hq",)
    assert [p["threads"] for p in store.curve(threaded.key)] == [1, 1]
    assert not records["nnrnn"].thread_dependent_parameters


def test_a_lone_combination_gets_every_core_from_its_first_epoch(small_task: Path,
                                                                  tmp_path: Path) -> None:
    # One combination and two workers: nothing is left for the second, so it is not even
    # started, and the one that runs is lent both cores before it trains.
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=2,
                 executor=ProcessExecutor(jobs=2, cores=2, lend_cores=True))
    store = RunStore(result.path)
    (record,) = store.records()
    assert [p["threads"] for p in store.curve(record.key)] == [2, 2]
    assert record.torch_threads == 2


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert "OOM" in exit_reason(-signal.SIGKILL)
    assert exit_reason(3) == "exited with code 3"
    rt = signal.SIGRTMIN + 6  # a real-time signal: no name, and no ValueError for it
    assert exit_reason(-rt) == f"was killed by signal {rt}"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--jobs"):
        ProcessExecutor(jobs=0)
    with pytest.raises(ConfigError, match="--timeout"):
        ProcessExecutor(timeout=0)


def test_process_results_equal_serial_results(small_task: Path, tmp_path: Path) -> None:
    grid = dict(models=["scratch", "nnrnn"], samplers=["random"], task=str(small_task),
                output_dir=tmp_path, quiet=True, epochs=2)
    serial = run(**grid)
    parallel = run(**grid, executor=ProcessExecutor(jobs=2))
    assert parallel.status == "complete"
    assert parallel.table[COLUMNS].equals(serial.table[COLUMNS])
    generated = [{r["key"]: r["generated"] for r in map(json.loads, (path / "records.jsonl")
                                                       .read_text().splitlines())}
               for path in (serial.path, parallel.path)]
    assert generated[0] == generated[1]
    manifest = json.loads((parallel.path / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "processes" and manifest["executor"]["jobs"] == 2


def test_crashing_and_hanging_plugins_cost_only_their_own_combination(
        crashers, small_task: Path, tmp_path: Path) -> None:
    # "hangs" goes first and holds one worker until the timeout; the other worker meets
    # each crash, is replaced, and finishes the grid.
    result = run(models=["hangs", "exits", "segfaults", "oom-killed", "scratch"],
                 samplers=["sequential"], task=str(small_task), output_dir=tmp_path,
                 quiet=True, registry=crashers, epochs=1,
                 executor=ProcessExecutor(jobs=2, timeout=8))
    assert result.status == "partial"
    assert statuses(result.table) == {"hangs": "timeout", "exits": "crashed",
                                      "segfaults": "crashed", "oom-killed": "crashed",
                                      "scratch": "ok"}
    errors = {p.name.split("__")[0]: p.read_text() for p in (result.path / "errors").iterdir()}
    assert "exited with code 3" in errors["exits"]
    assert "killed by SIGSEGV" in errors["segfaults"]
    assert "killed by SIGKILL" in errors["oom-killed"]
    assert "--timeout 8" in errors["hangs"]
    lines = (result.path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["key"] for line in lines)


def test_isolate_gives_each_combination_a_fresh_process(crashers, small_task: Path,
                                                        tmp_path: Path) -> None:
    # "hogs" leaves its process unable to allocate; the next combination must not care.
    result = run(models=["hogs", "scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, registry=crashers, epochs=1,
                 executor=ProcessExecutor(jobs=1, isolate=True))
    assert statuses(result.table) == {"hogs": "failed", "scratch": "ok"}
    assert "allocate" in (result.path / "errors" / "hogs__sequential__seed0.txt").read_text()


def test_plugins_that_cannot_reach_a_worker_are_refused_up_front(small_task: Path,
                                                                 tmp_path: Path) -> None:
    from harness_builtins.rnn import build_scratch

    class InFunction:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("local", build_scratch))

    registry = load_registry(autoload=False, extra=[InFunction()])
    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        run(models=["local"], samplers=["sequential"], task=str(small_task),
            output_dir=tmp_path / "out", quiet=True, registry=registry,
            executor=ProcessExecutor(jobs=1))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_load_the_full_plugin_grid_with_two_jobs_records_everything(small_task: Path,
                                                                    tmp_path: Path) -> None:
    """The bounded load test: every model x every sampler x 3 seeds, --jobs 2."""
    from click.testing import CliRunner

    from harness.cli import main

    registry = load_registry()
    # 'all' on a task without splits: every model but the count models, which need splits
    models = [m for m in registry.models.names() if registry.model(m).trained_by == "gradient"]
    expected = len(models) * len(registry.samplers.names()) * 3
    result = CliRunner().invoke(main, [
        "run", "--task", str(small_task), "--models", "all", "--samplers", "all",
        "--seed", "0,1,2", "--epochs", "2", "--hiddens", "8", "--jobs", "2",
        "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out").iterdir()
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["key"] for r in records}) == expected
    assert all(r["status"] == "ok" and r["torch_threads"] >= 1 for r in records)
    groups = len(models) * len(registry.samplers.names())
    assert len(result.stdout.splitlines()) == 2 + groups  # one summary row per group
    assert all("| 3/3 " in line for line in result.stdout.splitlines()[2:])
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_ctrl_c_under_jobs_leaves_one_line_and_no_leaked_semaphore(small_task: Path,
                                                                    tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--task", str(small_task), "-m",
         "scratch,nnrnn", "-s", "sequential,random", "--epochs", "1", "--seeds", "0,1,2",
         "--jobs", "2", "-o", str(out), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.read_text().endswith("\n") for p in out.glob("*/records.jsonl")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # both workers have trained: their bars exist
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("interrupted by SIGINT"), stderr
    assert "leaked" not in stderr and "Traceback" not in stderr, stderr
