"""The run's manifest holds the machine's matrix-product peak for each precision its plan
trains in, at the thread count each combination starts with, and the results use it."""

import json
from pathlib import Path

import pytest
import torch

from harness import load_run, resume, run
from harness.drive.driver import start_threads
from harness.execute.executor import SerialExecutor
from harness.execute.processes import ProcessExecutor
from harness.machine import peak as peak_module
from harness.plugin.manager import load_registry
from helpers import make_plan


@pytest.fixture
def measured(monkeypatch) -> list[tuple[str, int | None]]:
    """Peaks that cost nothing: 1 GFLOP/s per thread, each (precision, threads) recorded."""
    calls: list[tuple[str, int | None]] = []

    def fake(*, device, precision, threads):
        calls.append((precision, threads))
        return peak_module.Peak("cpu", "Test CPU", precision, threads, 1e9 * threads,
                                method="simulated")
    monkeypatch.setattr(peak_module, "measure_peak", fake)
    monkeypatch.setattr(peak_module, "_CACHE", {})
    return calls


def test_a_run_measures_its_peak_for_its_threads_and_precisions(
        small_task: Path, tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["random"], task=str(small_task), epochs=1,
                 grid={"precision": ["fp32", "bf16"]}, output_dir=tmp_path, quiet=True)
    assert result.status == "complete"
    manifest = json.loads((result.path / "manifest.json").read_text())
    peaks = manifest["peak"]
    assert [(p["precision"], p["threads"], p["kind"]) for p in peaks] == [
        ("bf16", torch.get_num_threads(), "measured"),
        ("fp32", torch.get_num_threads(), "measured")]
    assert all(p["flops_per_sec"] > 0 and "best of" in p["method"] for p in peaks)
    table = result.table.set_index("setting.precision")
    for precision, peak in (("bf16", peaks[0]), ("fp32", peaks[1])):
        row = table.loc[precision]
        assert row["peak_flops_per_sec"] == peak["flops_per_sec"]
        assert row["percent_of_peak"] == pytest.approx(
            100 * row["flops_per_token"] * row["tokens_per_sec"] / peak["flops_per_sec"])
    assert load_run(result.path).drop(columns="run_id").equals(result.table)


def test_workers_threads_are_the_peaks_threads(small_task: Path, measured) -> None:
    plan = make_plan(load_registry(), ["scratch"], ["random", "sequential"], [0, 1, 2],
                     str(small_task), device="cpu")
    assert start_threads(plan, SerialExecutor()) == [torch.get_num_threads()]
    assert start_threads(plan, ProcessExecutor(jobs=2, cores=8)) == [4]
    # idle workers lend their cores when the grid runs out: 1 to 3 busy workers of 3
    lending = ProcessExecutor(jobs=3, cores=8, lend_cores=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("harness.drive.driver.available_cores", lambda: 8)
        assert start_threads(plan, lending) == [2, 3, 4, 8]


def test_a_resumption_on_other_threads_adds_its_peak(small_task: Path, tmp_path: Path,
                                                     measured) -> None:
    first = run(models=["scratch"], samplers=["random"], task=str(small_task), epochs=1,
                output_dir=tmp_path, quiet=True, executor=ProcessExecutor(jobs=1, cores=1))
    (first.path / "records.jsonl").write_text("")  # as if stopped before its record
    resume(first.path, executor=ProcessExecutor(jobs=1, cores=2), quiet=True)
    peaks = json.loads((first.path / "manifest.json").read_text())["peak"]
    assert [(p["precision"], p["threads"], p["flops_per_sec"]) for p in peaks] == [
        ("fp32", 1, 1e9), ("fp32", 2, 2e9)]
    row = load_run(first.path).iloc[0]
    assert row["peak_flops_per_sec"] == 2e9  # its worker started on 2 threads
