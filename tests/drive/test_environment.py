"""The manifest's environment block: provenance on every run, and old run directories
without it still read, reported and compared (harness.drive.environment)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import run
from harness.cli import main
from harness.drive.environment import collect_environment
from harness.machine.provenance import cpu_flags, harness_source, torch_build
from harness.plugin.manager import load_registry
from harness.results.compare import compare_runs
from harness.results.store import RunStore

REPO = Path(__file__).resolve().parents[2]
OLD_RUN = next((REPO / "results" / "reference-ch8").glob("*/manifest.json")).parent
"""A committed run made before the manifest held provenance."""

KEPT = ("harness", "python", "python_implementation", "torch", "platform", "cpu",
        "cpu_count", "torch_threads", "reproducible", "device", "device_name", "cuda",
        "plugins", "plugin_failures")
"""What the manifest recorded before provenance: still there, under the same names."""
ADDED = ("harness_source", "torch_build", "cpu_flags", "available_cores",
         "torch_interop_threads", "float32_matmul_precision", "math_env", "gpu")


def test_the_environment_holds_provenance_beside_what_it_held(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    started = time.perf_counter()
    env = collect_environment(torch.device("cpu"), load_registry(autoload=False),
                              reproducible=True)
    assert time.perf_counter() - started < 1.0
    assert set(KEPT) | set(ADDED) <= set(env)
    assert env["harness_source"] == harness_source()
    assert env["torch_build"] == torch_build() and env["cpu_flags"] == cpu_flags()
    assert env["math_env"]["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in env["math_env"]
    assert env["gpu"] is None and env["reproducible"] is True
    assert json.loads(json.dumps(env)) == env  # plain JSON, as the manifest stores it


def test_a_run_records_it_in_its_manifest(small_task: Path, tmp_path: Path) -> None:
    result = run(models=["scratch"], samplers=["sequential"], task=str(small_task),
                 output_dir=tmp_path, quiet=True, epochs=1)
    env = json.loads((result.path / "manifest.json").read_text())["environment"]
    assert env["harness_source"]["source"] in ("git", "distribution")
    assert env["torch_build"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert RunStore.open(result.path).manifest().environment == env


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the committed run (report writes into the run directory)."""
    copy = tmp_path / OLD_RUN.name
    shutil.copytree(OLD_RUN, copy)
    env = json.loads((copy / "manifest.json").read_text())["environment"]
    assert not set(ADDED) & set(env)  # it is an old one
    return copy


def test_an_old_manifest_without_provenance_is_reported(old_run: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(old_run), "-q"])
    assert result.exit_code == 0, result.output
    assert "| scratch " in result.output
    cpu = RunStore.open(old_run).manifest().environment["cpu"]
    assert f"| {cpu} " in (old_run / "report.md").read_text()


def test_an_old_run_compared_with_a_new_one_lists_what_it_did_not_record(
        old_run: Path, tmp_path: Path, timemachine: Path) -> None:
    new = run(models=["scratch"], samplers=["sequential"], corpus=timemachine,
              output_dir=tmp_path / "new", quiet=True, epochs=1, max_tokens=2000,
              num_hiddens=16).path
    comparison = compare_runs([old_run, new], force=True)
    diff = comparison.environment
    lacking = {key.split(".")[0] for key, labels in diff.not_recorded if labels == ("A",)}
    assert set(ADDED) <= lacking
    # what only the new run recorded is listed apart, not as a difference
    assert not {key.split(".")[0] for key, _ in diff.differences} & set(ADDED)
    result = CliRunner().invoke(main, ["compare", str(old_run), str(new), "--force"])
    assert result.exit_code == 0, result.output
    assert "**Environment**" in result.output
    assert "Not recorded (a run made by an older harness): A lacks harness\\_source" \
        in result.output
