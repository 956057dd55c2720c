"""--reproducible: the same bits on any number of threads, checked in fresh processes
(oneMKL reads its setting once per process, at its first call)."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.machine.determinism import VARIABLE, reproducible_mode, thread_dependent_parameters
from harness.results.frames import load_run
from harness.results.store import RunStore

from fake_plugins import IN_TURN, make_distribution

PROBE = ("import torch; torch.set_num_threads(2); "
         "from harness.machine.determinism import thread_count_changes_results as changes, "
         "make_thread_invariant; before = {before}; make_thread_invariant(); "
         "print(before, changes())")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != VARIABLE}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


DEFAULT_MODE = """
import json
import torch
from harness.machine.determinism import thread_count_changes_results
torch.set_num_threads(2)
generator = torch.Generator().manual_seed(0)
H = torch.randn(1120, 512, generator=generator)  # the seed's 32 x 35 rows, 512 units,
dY = torch.randn(1120, 28, generator=generator)  # 28 tokens


def output_layer_gradient(threads, layer):
    torch.set_num_threads(threads)
    layer.zero_grad(set_to_none=True)
    layer(H).backward(dY)
    return layer.weight.grad.clone()


class Scratch(torch.nn.Module):  # scratch's output layer: addmm(b_q, H, W_hq)
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(512, 28, generator=generator))
        self.bias = torch.nn.Parameter(torch.zeros(28))

    def forward(self, H):
        return torch.addmm(self.bias, H, self.weight)


found = {"product": thread_count_changes_results()}
for name, layer in (("scratch", Scratch()), ("linear", torch.nn.Linear(512, 28))):
    gradients = [output_layer_gradient(threads, layer) for threads in (1, 2, 1, 2)]
    found[name] = not torch.equal(gradients[2], gradients[3])
print(json.dumps(found))
"""


@functools.cache
def default_mode_dependence() -> dict[str, bool]:
    """Whether this machine's maths library gives other bits on 2 threads than on 1, in the
    default mode, in a fresh process: for the product the harness probes with
    (``product``, :func:`thread_count_changes_results`), and for the output layers' weight
    gradients of ``scratch`` (``scratch``) and ``nnrnn`` (``linear``) at the seed's
    shapes. It depends on the CPU: oneMKL splits these products between threads on some
    (Intel Xeons with avx512_bf16), not on others (an AMD EPYC without it)."""
    done = python(DEFAULT_MODE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "this CPU"


def require_default_mode_dependence(*kinds: str) -> dict[str, bool]:
    """Skip, saying why, unless one of ``kinds`` of :func:`default_mode_dependence` holds
    here: a test of how the harness finds or refuses thread dependence has none to find
    on a CPU whose products do not depend on the thread count."""
    found = default_mode_dependence()
    if not any(found[kind] for kind in kinds):
        what = " and ".join(PROBED[kind] for kind in kinds)
        pytest.skip(f"on {cpu_name()}, torch's maths library gives the same bits on 1 and 2 "
                    f"threads for {what} in the default mode: no thread dependence to find")
    return found


PROBED = {"product": "the product thread_count_changes_results() probes",
          "scratch": "scratch's output-layer weight gradient",
          "linear": "nnrnn's output-layer weight gradient"}


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch without oneMKL")
def test_strict_mode_makes_products_independent_of_the_thread_count() -> None:
    done = python(PROBE.format(before="None"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"]


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_asking_after_the_first_product_is_refused() -> None:
    require_default_mode_dependence("product")
    done = python(PROBE.format(before="changes()"))
    assert done.returncode != 0
    assert "still depend on the thread count" in done.stderr
    assert "True" not in done.stdout  # the default mode does depend on it here


GRADIENTS = """
import json
import torch
from harness.machine.determinism import make_thread_invariant, thread_dependent_parameters
if MODE == "strict":
    make_thread_invariant()
from harness.plugin.contracts import ModelSettings
from harness.plugin.manager import load_registry
registry = load_registry(autoload=False)
generator = torch.Generator().manual_seed(0)
X, Y = (torch.randint(0, 28, (32, 35), generator=generator) for _ in range(2))
found = {}
for name in registry.models.names():
    if registry.model(name).trained_by != "gradient":  # a count model has no gradients
        continue
    for layers, dropout in ((1, 0.0), (2, 0.2)):
        torch.manual_seed(0)
        try:
            model = registry.model(name).factory(28, ModelSettings(512, layers, dropout),
                                                 torch.device("cpu"))
        except ValueError:  # scratch is one layer only
            continue
        found[f"{name}/{layers}"] = thread_dependent_parameters(model, X=X, Y=Y, threads=2)
print(json.dumps(found))
"""


def thread_dependence(mode: str) -> dict[str, list[str]]:
    """Per built-in model and depth, the parameters whose gradient differs between 1 and
    2 threads, in a fresh process in ``mode`` ("strict" or "default")."""
    done = python(f"MODE = {mode!r}\n" + GRADIENTS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_every_builtin_model_trains_the_same_bits_on_any_thread_count_in_strict_mode() -> None:
    """The seed's shapes, where oneMKL splits the output layer's weight gradient between
    threads, and scratch's recurrence runs as 2 row blocks on 2 threads and 1 on 1."""
    found = thread_dependence("strict")
    assert {"scratch/1", "nnrnn/2", "scratch-gru/2", "scratch-lstm/2", "lstm/2"} <= set(found)
    assert found == {key: [] for key in found}


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_the_check_finds_the_thread_dependence_of_the_default_mode() -> None:
    products = require_default_mode_dependence("scratch", "linear")
    found = thread_dependence("default")
    if products["scratch"]:
        assert "W_hq" in found["scratch/1"]  # the output layer's weight gradient
    if products["linear"]:
        assert "linear.weight" in found["nnrnn/1"]


class HookedTable(torch.nn.Module):
    """Logits looked up from two tables; a hook scales ``a``'s gradient by the thread
    count, so that gradient, and no other, depends on it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(5, 5))
        self.b = torch.nn.Parameter(torch.randn(5, 5))
        self.a.register_hook(lambda grad: grad * torch.get_num_threads())

    def begin_state(self, batch_size: int, device: torch.device) -> None:
        return None

    def forward(self, X: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        return (self.a[X.T] + self.b[X.T]).reshape(-1, 5), None


def test_the_check_names_the_parameters_whose_gradient_follows_the_threads() -> None:
    torch.manual_seed(0)
    model, X = HookedTable(), torch.randint(0, 5, (3, 4))
    before = [p.detach().clone() for p in model.parameters()]
    threads = torch.get_num_threads()
    assert thread_dependent_parameters(model, X=X, Y=X.roll(1, dims=1), threads=2) == ["a"]
    assert thread_dependent_parameters(model, X=X, Y=X, threads=1) == []
    assert torch.get_num_threads() == threads
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_reproducible_mode_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(VARIABLE, "AUTO,STRICT")
    assert reproducible_mode()
    monkeypatch.setenv(VARIABLE, "AUTO")
    assert not reproducible_mode()
    monkeypatch.delenv(VARIABLE)
    assert not reproducible_mode()


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,
                    reason="needs oneMKL and 2 cores")
def test_jobs_give_the_serial_runs_numbers_bit_for_bit(timemachine: Path, site: Path,
                                                       tmp_path: Path) -> None:
    """The seed's recipe (512 hidden, 32 x 35 batches: the shapes where oneMKL splits the
    output layer's gradient between threads), 5 epochs, serially and in 2 workers. In the
    workers nnrnn trains during the scratch RNN's first epoch, and lends it its core when
    done (:data:`fake_plugins.IN_TURN`, whatever the speed or load of the machine): the
    scratch RNN starts on 1 thread and ends on 2, with the serial run's bits."""
    jobs_out, started = tmp_path / "jobs", tmp_path / "started"
    make_distribution(site, "fake-in-turn", "0.1", "fake_in_turn",
                      IN_TURN.format(runs=str(jobs_out), started=str(started), leaves="nnrnn"))
    env = {k: v for k, v in os.environ.items()
           if k not in (VARIABLE, "HARNESS_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    tables, threads = [], []
    for extra in ([], ["--jobs", "2"]):
        out = jobs_out if extra else tmp_path / "serial"
        done = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--reproducible", "-q",
             "--corpus", str(timemachine), "--models", "stays,leaves",
             "--samplers", "sequential", "--epochs", "5", "--valid-tokens", "0",
             "-o", str(out), *extra],
            capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        (run_dir,) = out.iterdir()
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["environment"]["reproducible"] is True
        tables.append(load_run(run_dir).set_index("model")["train_ppl"])
        store = RunStore(run_dir)
        (stays,) = [r.key for r in store.records() if r.model == "stays"]
        threads.append([point["threads"] for point in store.curve(stays)])
    assert started.exists()  # the workers did take turns
    assert tables[0].to_dict() == tables[1].to_dict()
    assert threads[1] == [1, 2, 2, 2, 2]  # lent nnrnn's core after its first epoch


def test_every_combination_warms_the_vector_math_up_before_its_model_runs(
        small_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.train.combination
    from harness import hookimpl
    from harness import run
    from harness.plugin.contracts import ModelSpec
    from harness.plugin.manager import load_registry
    from harness_builtins.rnn import build_scratch

    events: list[str] = []
    monkeypatch.setattr(harness.train.combination, "warm_up_math",
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
    from harness.machine.determinism import warm_up_math

    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    warm_up_math(torch.device("cpu"))
    warm_up_math(torch.device("meta"))
    assert torch.equal(torch.rand(4), expected)  # the seeded random stream is untouched
