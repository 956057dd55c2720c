"""The Ray executor on a local Ray with 2 CPUs: same numbers as serial, and a task that
raises, dies or hangs costs only its own combination. Skipped where Ray is not installed
(pip install '.[ray]'); ``pytest -m 'not ray'`` skips them anyway."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import hookimpl
from harness import resume, run
from harness.plugin.contracts import ModelSpec
from harness.execute.executor import SerialExecutor
from helpers import make_plan
from harness.plugin.manager import load_registry
from harness.execute.ray import RayExecutor
from harness.train.combination import Job
from harness.execute.signals import RunInterrupted
from harness.results.store import RunStore
from harness_builtins.rnn import build_scratch

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

COLUMNS = ["model", "sampler", "setting.num_hiddens", "seed", "status", "train_ppl",
           "valid_ppl", "num_params"]
TESTS = str(Path(__file__).parent)


def raises(vocab_size, settings, device):
    raise ValueError("this model cannot be built")


def exits(vocab_size, settings, device):
    os._exit(3)


def hangs(vocab_size, settings, device):
    time.sleep(3600)


class Misbehaving:
    """Models that raise, kill their process, or never finish. Module level, so that Ray
    workers import it from this file (tests/ is on their PYTHONPATH)."""

    @hookimpl
    def register_models(self, register):
        for name, factory in [("raises", raises), ("exits", exits), ("hangs", hangs)]:
            register(ModelSpec(name, factory))


class Interrupts:
    """A model that sends SIGINT to the driver the first time it is built to train (a
    marker file remembers; the gate's dry run on the meta device does not count), then
    trains as the scratch RNN."""

    def __init__(self, driver: int, marker: Path) -> None:
        self.driver, self.marker = driver, marker

    def build(self, vocab_size, settings, device):
        if device.type != "meta" and not self.marker.exists():
            self.marker.touch()
            os.kill(self.driver, signal.SIGINT)
            time.sleep(3600)  # until the driver cancels this task
        return build_scratch(vocab_size, settings, device)

    @hookimpl
    def register_models(self, register):
        register(ModelSpec("interrupts", self.build))


class Explodes(Job):
    """A job that raises outside the runner, as one whose plugins cannot load on a node."""

    def __call__(self, combo):
        raise RuntimeError("no plugins on this node")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (2 CPUs, a small object store); the executor uses it
    and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000,
             logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS, *sys.path])}})
    yield
    ray.shutdown()


def test_ray_gives_the_same_numbers_as_serial(small_task: Path, tmp_path: Path) -> None:
    grid = dict(models=["scratch", "nnrnn"], samplers=["sequential"], seeds=[0, 3],
                task=str(small_task), output_dir=tmp_path, quiet=True, epochs=1,
                grid={"hidden": [8, 16]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks' threads (1 CPU each); also faster here
    try:
        serial = run(**grid, executor=SerialExecutor())
    finally:
        torch.set_num_threads(threads)
    distributed = run(**grid, executor=RayExecutor())
    assert distributed.status == "complete" and len(distributed.table) == 8
    assert distributed.table[COLUMNS].equals(serial.table[COLUMNS])
    generated = [{r["key"]: r["generated"] for r in map(json.loads, (path / "records.jsonl")
                                                       .read_text().splitlines())}
               for path in (serial.path, distributed.path)]
    assert generated[0] == generated[1]
    executor = json.loads((distributed.path / "manifest.json").read_text())["executor"]
    assert executor["kind"] == "ray" and executor["cpus_per_task"] == 1
    assert executor["cluster_cpus"] == 2 and executor["gpus_per_task"] == 0
    records = [json.loads(line) for line in (distributed.path / "records.jsonl").open()]
    assert {r["torch_threads"] for r in records} == {1}  # threads = the task's CPUs
    assert ray.is_initialized()  # a Ray the caller started is left running


def test_a_task_that_raises_dies_or_hangs_costs_only_its_own_combination(
        small_task: Path, tmp_path: Path) -> None:
    registry = load_registry(autoload=False, extra=[Misbehaving()])
    result = run(models=["hangs", "raises", "exits", "scratch"], samplers=["sequential"],
                 task=str(small_task), output_dir=tmp_path, quiet=True, registry=registry,
                 epochs=1, executor=RayExecutor(timeout=3))
    assert result.status == "partial"
    assert dict(zip(result.table.model, result.table.status)) == {
        "hangs": "timeout", "raises": "failed", "exits": "crashed", "scratch": "ok"}
    errors = {p.name.split("__")[0]: p.read_text() for p in (result.path / "errors").iterdir()}
    assert "ValueError: this model cannot be built" in errors["raises"]
    assert "Traceback" in errors["raises"]
    assert "Ray worker died" in errors["exits"]
    assert "--timeout 3" in errors["hangs"]


def test_a_task_that_raises_outside_the_runner_is_recorded_as_failed(small_task: Path) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["scratch"], ["sequential", "random"], [0], str(small_task))
    outcomes = []
    RayExecutor().run(plan.combinations, Explodes(plan, registry.loader), outcomes.append)
    assert sorted(o.record.sampler for o in outcomes) == ["random", "sequential"]
    for outcome in outcomes:
        assert outcome.record.status == "failed"
        assert outcome.record.error == "RuntimeError: no plugins on this node"
        assert "no plugins on this node" in outcome.traceback


def test_an_interrupted_ray_run_cancels_its_tasks_and_resumes(small_task: Path,
                                                              tmp_path: Path) -> None:
    registry = load_registry(autoload=False,
                             extra=[Interrupts(os.getpid(), tmp_path / "interrupted")])
    grid = dict(models=["scratch", "interrupts"], samplers=["sequential"], seeds=[0, 1],
                task=str(small_task), output_dir=tmp_path / "out", quiet=True,
                registry=registry, epochs=1)
    with pytest.raises(RunInterrupted) as stopped:
        run(**grid, executor=RayExecutor())
    run_dir = stopped.value.run_dir
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    done = RunStore.open(run_dir).records()
    assert len(done) < 4 and all(r.status == "ok" for r in done)
    resumed = resume(run_dir, registry=registry, executor=RayExecutor(), quiet=True)
    assert resumed.status == "complete" and len(resumed.table) == 4
    assert len(RunStore.open(run_dir).records()) == 4


def test_the_command_line_starts_a_local_ray_for_the_run_and_stops_it(
        small_task: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--executor", "ray", "--task", str(small_task),
         "--models", "scratch", "--samplers", "sequential,random", "--epochs", "1",
         "--hiddens", "8",
         "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # the table alone: Ray's and the workers' lines go to stderr
    assert len(lines) == 2 + 2 and lines[0].startswith("| model")
    assert "scratch/random/seed0: ok" in done.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    executor = json.loads((run_dir / "manifest.json").read_text())["executor"]
    assert executor["kind"] == "ray" and executor["address"] == "local"


def test_starting_a_local_ray_leaves_the_callers_signal_handlers_as_they_were() -> None:
    from types import SimpleNamespace

    def ray_init(**kwargs) -> None:  # what ray.init does to the main thread's handlers
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    executor = RayExecutor()
    executor.ray = SimpleNamespace(is_initialized=lambda: False, init=ray_init)
    before = signal.getsignal(signal.SIGTERM)
    executor._connect(quiet=True)
    assert signal.getsignal(signal.SIGTERM) is before
