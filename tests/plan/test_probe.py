"""The precision probe: one real forward and backward per (model, precision) at plan time,
refusing up front what the device cannot train (harness.plan.probe)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import harness.plan.probe as probe
from harness import hookimpl, run
from harness.errors import ConfigError
from harness.machine.provenance import BF16_FLAGS, cpu_flags, native_bf16
from harness.plan.plan import Combination
from harness.plan.probe import emulated_bf16, probe_models
from harness.plugin.contracts import ModelSpec
from harness.plugin.manager import load_registry
from helpers import make_plan


class OnlyFp32(nn.Module):
    """A model whose forward pass fails under bf16 autocast with a two-line error, as
    oneDNN's LSTM does on a CPU without avx512_bf16."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.out = nn.Linear(vocab_size, vocab_size)

    def begin_state(self, batch_size, device):
        return None

    def forward(self, X, state):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor\nsecond line of detail")
        return self.out(F.one_hot(X.T.reshape(-1), self.vocab_size).float()), None


class Recorder(OnlyFp32):
    """Records the autocast state of each forward pass, the logits' dtype, and each
    backward pass that reaches its weights."""

    events: list[str] = []

    def forward(self, X, state):
        logits = self.out(F.one_hot(X.T.reshape(-1), self.vocab_size).float())
        Recorder.events.append(f"forward autocast={torch.is_autocast_enabled('cpu')} "
                               f"{logits.dtype} rows={X.shape[0]}")
        if logits.requires_grad:
            logits.register_hook(lambda grad: Recorder.events.append("backward"))
        return logits, None


class Broken(OnlyFp32):
    """Fails in every precision: the model's own bug, not the device's."""

    def forward(self, X, state):
        raise RuntimeError("no such layer")


class Probed:
    """Registers the test models; counts every factory call on a real device."""

    def __init__(self) -> None:
        self.real_calls: list[str] = []

    def factory(self, cls: type[nn.Module], name: str):
        def build(vocab_size, settings, device):
            if device.type != "meta":
                self.real_calls.append(f"{name} hidden={settings.num_hiddens}")
            return cls(vocab_size)
        return build

    @hookimpl
    def register_models(self, register):
        for name, cls in [("only-fp32", OnlyFp32), ("recorder", Recorder), ("broken", Broken)]:
            register(ModelSpec(name, self.factory(cls, name)))
        register(ModelSpec("counter", self.factory(Broken, "counter"), trained_by="counts"))


@pytest.fixture
def probed() -> Probed:
    return Probed()


def plan_for(probed: Probed, task: Path, models: list[str], **recipe):
    grid = recipe.pop("grid", None)
    return make_plan(load_registry(autoload=False, extra=[probed]), models, ["sequential"],
                     [0], str(task), recipe, grid=grid, device="cpu")


def test_a_model_the_device_cannot_train_in_bf16_is_refused_in_one_line(
        probed: Probed, small_task: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        plan_for(probed, small_task, ["only-fp32"], precision="bf16")
    message = str(refused.value)
    assert message.startswith("model 'only-fp32' cannot train in bf16 on cpu (")
    assert "): RuntimeError: could not create a primitive descriptor (this CPU " in message
    assert "\n" not in message and "second line" not in message
    plan_for(probed, small_task, ["only-fp32"])  # fp32 trains


def test_the_probe_trains_one_tiny_step_under_the_trainers_autocast(
        probed: Probed, small_task: Path) -> None:
    Recorder.events = []
    plan_for(probed, small_task, ["recorder"], precision="bf16")
    assert Recorder.events == [
        f"forward autocast=True torch.bfloat16 rows={probe.PROBE_ROWS}", "backward"]


def test_fp32_on_the_cpu_is_not_probed_and_each_model_precision_once(
        probed: Probed, small_task: Path) -> None:
    plan_for(probed, small_task, ["recorder"], grid={"precision": ["fp32"]})
    assert probed.real_calls == []
    plan_for(probed, small_task, ["recorder"], precision="bf16", grid={"lr": [0.5, 1.0]})
    assert probed.real_calls == ["recorder hidden=16"]  # the lr does not change the model
    probed.real_calls.clear()
    plan_for(probed, small_task, ["recorder"], grid={"precision": ["fp32", "bf16"],
                                                     "hidden": [8, 16]})
    assert probed.real_calls == ["recorder hidden=8", "recorder hidden=16"]


def test_a_model_broken_in_every_precision_is_left_to_the_run(
        probed: Probed, small_task: Path, tmp_path: Path) -> None:
    plan_for(probed, small_task, ["broken"], precision="bf16")
    result = run(models=["broken", "recorder"], samplers=["sequential"],
                 task=str(small_task), output_dir=tmp_path / "out", quiet=True, epochs=1,
                 precision="bf16", registry=load_registry(autoload=False, extra=[probed]))
    assert dict(zip(result.table.model, result.table.status)) == {"broken": "failed",
                                                                  "recorder": "ok"}


def test_count_models_are_not_probed(probed: Probed, small_task: Path) -> None:
    registry = load_registry(autoload=False, extra=[probed])
    plan = plan_for(probed, small_task, ["recorder"], precision="bf16")
    probed.real_calls.clear()
    probe_models(replace(plan, combinations=(Combination("counter", "sequential", 0),)),
                 registry)
    assert probed.real_calls == []
    with pytest.raises(ConfigError, match="model 'only-fp32'"):
        probe_models(replace(plan, combinations=(Combination("only-fp32", "sequential", 0),)),
                     registry)


def test_the_probe_leaves_torch_random_state_alone(probed: Probed, small_task: Path) -> None:
    plan = plan_for(probed, small_task, ["recorder"], precision="bf16")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    probe_models(plan, load_registry(autoload=False, extra=[probed]))
    assert torch.equal(torch.rand(3), expected)


NO_BF16 = ["sse4_2", "avx", "avx2", "fma", "avx512f"]


@pytest.mark.parametrize(("flags", "environ", "precision", "says"), [
    (NO_BF16, {}, "bf16", "this CPU has no avx512_bf16 or amx_bf16"),
    ([*NO_BF16, "avx512_bf16"], {}, "bf16", None),
    ([*NO_BF16, "amx_bf16"], {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "bf16", None),
    ([*NO_BF16, "avx512_bf16", "amx_bf16"], {"ONEDNN_MAX_CPU_ISA": "avx2"}, "bf16",
     "this CPU has avx512_bf16, amx_bf16, but ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off them"),
    (NO_BF16, {}, "fp32", None),
    (None, {}, "bf16", None),  # flags unknown (not Linux): no guess
])
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(
        probed: Probed, small_task: Path, monkeypatch: pytest.MonkeyPatch, flags, environ,
        precision, says) -> None:
    plan = plan_for(probed, small_task, ["recorder"], precision=precision)
    monkeypatch.setattr(probe, "cpu_flags", lambda: flags)
    message = emulated_bf16(plan, environ=environ)
    if says is None:
        assert message is None
    else:
        assert message == (f"bf16 is emulated on this CPU ({says}) and is usually several "
                           "times slower than fp32 there")


# ---- for real, through the command line: ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN behave as
# on a CPU without avx512_bf16, where a bf16 nn.LSTM has no oneDNN primitive ----

X86_ONEDNN = torch.backends.mkldnn.is_available() and cpu_flags() is not None \
    and "avx2" in (cpu_flags() or [])
needs_onednn = pytest.mark.skipif(not X86_ONEDNN, reason="needs torch with oneDNN on x86")


def harness_cli(*args: str, isa: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA",
                                                            "DNNL_MAX_CPU_ISA")}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@needs_onednn
@pytest.mark.parametrize("executor", [[], ["--jobs", "2"]], ids=["serial", "isolated"])
def test_bf16_lstm_where_onednn_has_no_bf16_is_refused_before_anything_trains(
        timemachine: Path, tmp_path: Path, executor: list[str]) -> None:
    done = harness_cli("run", "--precision", "bf16", "-m", "lstm", "--epochs", "1",
                       "--corpus", str(timemachine), "-o", str(tmp_path / "out"), *executor,
                       isa="AVX2")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: model 'lstm' cannot train in bf16 on cpu (")
    assert ("RuntimeError: could not create a primitive descriptor for the LSTM forward "
            "propagation primitive") in line
    assert "but ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off them" in line
    assert not (tmp_path / "out").exists()


@needs_onednn
@pytest.mark.skipif(not native_bf16(flags=cpu_flags(), environ={}),
                    reason="this CPU has no avx512_bf16 or amx_bf16")
def test_bf16_lstm_trains_where_the_cpu_has_bf16(timemachine: Path, tmp_path: Path) -> None:
    done = harness_cli("run", "--precision", "bf16", "-m", "lstm", "-s", "sequential",
                       "--epochs", "1", "--hiddens", "32", "--max-tokens", "2000",
                       "--valid-tokens", "0",
                       "--corpus", str(timemachine), "-o", str(tmp_path), "-q")
    assert done.returncode == 0, done.stderr
    assert "| lstm " in done.stdout and "warning" not in done.stderr


@needs_onednn
def test_emulated_bf16_trains_with_one_warning_line(timemachine: Path, tmp_path: Path) -> None:
    done = harness_cli("run", "--precision", "bf16", "-m", "scratch", "-s", "sequential",
                       "--epochs", "1", "--hiddens", "16", "--max-tokens", "2000",
                       "--valid-tokens", "0", "--corpus", str(timemachine), "-o",
                       str(tmp_path), "-q", isa="AVX2")
    assert done.returncode == 0, done.stderr
    has = [flag for flag in BF16_FLAGS if flag in (cpu_flags() or [])]
    says = (f"this CPU has {', '.join(has)}, but ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off "
            "them" if has else "this CPU has no avx512_bf16 or amx_bf16")
    warnings = [line for line in done.stderr.splitlines() if line.startswith("harness: warning")]
    assert warnings == [f"harness: warning: bf16 is emulated on this CPU ({says}) and is "
                        "usually several times slower than fp32 there"]
