"""--reproducible: the same bits on any number of threads, checked in fresh processes
(oneMKL reads its setting once per process, at its first call)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.reproducible import VARIABLE, reproducible_mode
from harness.results import load_run

PROBE = ("import torch; torch.set_num_threads(2); "
         "from harness.reproducible import thread_count_changes_results as changes, "
         "make_thread_invariant; before = {before}; make_thread_invariant(); "
         "print(before, changes())")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != VARIABLE}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch without oneMKL")
def test_strict_mode_makes_products_independent_of_the_thread_count() -> None:
    done = python(PROBE.format(before="None"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"]


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_asking_after_the_first_product_is_refused() -> None:
    done = python(PROBE.format(before="changes()"))
    assert done.returncode != 0
    assert "still depend on the thread count" in done.stderr
    assert "True" not in done.stdout  # the default mode does depend on it here


def test_reproducible_mode_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(VARIABLE, "AUTO,STRICT")
    assert reproducible_mode()
    monkeypatch.setenv(VARIABLE, "AUTO")
    assert not reproducible_mode()
    monkeypatch.delenv(VARIABLE)
    assert not reproducible_mode()


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_jobs_give_the_serial_runs_numbers_bit_for_bit(timemachine: Path,
                                                       tmp_path: Path) -> None:
    """The seed's recipe (512 hidden, 32 x 35 batches: the shapes where oneMKL splits the
    output layer's gradient between threads), 2 epochs, serially and in 2 workers."""
    tables = []
    for extra in ([], ["--jobs", "2"]):
        out = tmp_path / ("jobs" if extra else "serial")
        done = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--reproducible", "-q",
             "--corpus", str(timemachine), "--models", "scratch,nnrnn",
             "--samplers", "sequential", "--epochs", "2", "--valid-tokens", "0",
             "-o", str(out), *extra],
            capture_output=True, text=True, timeout=300,
            env={k: v for k, v in os.environ.items() if k != VARIABLE})
        assert done.returncode == 0, done.stderr
        (run_dir,) = out.iterdir()
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["environment"]["reproducible"] is True
        tables.append(load_run(run_dir).set_index("model")["train_ppl"])
    assert tables[0].to_dict() == tables[1].to_dict()


def test_every_combination_warms_the_vector_math_up_before_its_model_runs(
        small_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.runner
    from harness import hookimpl
    from harness.api import run
    from harness.contracts import ModelSpec
    from harness.plugins import load_registry
    from harness_builtins.rnn import build_scratch

    events: list[str] = []
    monkeypatch.setattr(harness.runner, "warm_up_math",
                        lambda device: events.append(f"warm {device}"))

    class Recorded:
        @hookimpl
        def register_models(self, register):
            def factory(vocab, settings, device):
                if device.type != "meta":  # the plan's dry run is not a model's first call
                    events.append("model")
                return build_scratch(vocab, settings, device)
            register(ModelSpec("recorded", factory))

    run(models=["recorded"], samplers=["sequential", "random"], task=str(small_task),
        output_dir=small_task.parent / "out", quiet=True, epochs=1,
        registry=load_registry(autoload=False, extra=[Recorded()]), device="cpu")
    assert events == ["warm cpu", "model", "warm cpu", "model"]


def test_the_warm_up_leaves_no_trace_and_skips_other_devices() -> None:
    from harness.reproducible import warm_up_math

    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    warm_up_math(torch.device("cpu"))
    warm_up_math(torch.device("meta"))
    assert torch.equal(torch.rand(4), expected)  # the seeded random stream is untouched
