"""The matrix-product peak: how it is measured (structure and arithmetic, never speed), the
published GPU table, and what a run's manifest gets."""

import math
import re

import pytest
import torch

from harness.machine import peak as peak_module
from harness.machine.peak import (BUDGET_SECONDS, PUBLISHED, SAMPLES, measure_peak,
                                  published_peak, run_peaks)

CPU = torch.device("cpu")


def simulated(rate: float, calls: list[tuple[int, int]] | None = None):
    """A stand-in for the product timer: a machine whose products run at exactly ``rate``
    FLOP/s, recording each (size, repeats) it is asked to time."""
    def timer(a, b, out, repeats, device):
        if calls is not None:
            calls.append((a.shape[0], repeats))
        return 2 * a.shape[0] ** 3 * repeats / rate
    return timer


def test_a_real_measurement_has_a_rate_its_method_and_restores_the_threads() -> None:
    before = torch.get_num_threads()
    for precision in ("fp32", "bf16"):
        peak = measure_peak(device=CPU, precision=precision, threads=1, samples=2)
        assert peak.flops_per_sec is not None and peak.flops_per_sec > 0
        assert (peak.device, peak.precision, peak.threads, peak.kind) == \
            ("cpu", precision, 1, "measured")
        size = int(re.search(r"\((\d+) x \1\) @", peak.method).group(1))
        assert size % 64 == 0 and "best of 2 samples" in peak.method
        assert peak.load is not None and peak.load >= 0  # Linux keeps a load average
        assert torch.get_num_threads() == before
    assert measure_peak(device=CPU, precision="fp32").threads == before  # None: this process's


def test_the_peak_is_the_best_sample_of_products_sized_to_the_target(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(peak_module, "_time", simulated(5e10, calls))
    peak = measure_peak(device=CPU, precision="fp32", threads=1, target_seconds=0.02)
    assert peak.flops_per_sec == pytest.approx(5e10)
    size, repeats = calls[-1]
    # n grew from 256 until one product takes about the target: 2 n^3 / 5e10 ~ 0.02 s
    assert calls[0][0] == 256 and size == 64 * round((0.02 * 5e10 / 2) ** (1 / 3) / 64)
    assert repeats == math.ceil(0.02 / (2 * size ** 3 / 5e10))  # a sample of about 0.02 s
    assert calls[-SAMPLES:] == [(size, repeats)] * SAMPLES
    assert f"best of {SAMPLES} samples of {repeats} x ({size} x {size})" in peak.method


def test_the_peak_is_the_fastest_sample_not_the_mean(monkeypatch) -> None:
    slowdowns = iter([1.0, 1.0, 3.0, 1.5, 1.0, 2.0, 4.0])  # 2 sizing calls, 5 samples
    fast = simulated(2e10)
    monkeypatch.setattr(peak_module, "_time", lambda *args: fast(*args) * next(slowdowns))
    monkeypatch.setattr(peak_module, "START_SIZE", 512)
    monkeypatch.setitem(peak_module.MAX_SIZE, "cpu", 512)  # no growth: 2 sizing calls
    peak = measure_peak(device=CPU, precision="fp32", target_seconds=1e-9)
    assert peak.flops_per_sec == pytest.approx(2e10)  # the one sample at full speed


def test_fast_products_are_repeated_within_a_sample_and_n_is_capped(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(peak_module, "_time", simulated(1e15, calls))  # a GPU's speed
    monkeypatch.setitem(peak_module.MAX_SIZE, "cpu", 1024)
    peak = measure_peak(device=CPU, precision="bf16", target_seconds=0.02)
    size, repeats = calls[-1]
    assert size == 1024
    assert math.ceil(0.02 / (2 * size ** 3 / 1e15)) > 1000 and repeats == 1000  # at most
    assert peak.flops_per_sec == pytest.approx(1e15)


def test_a_busy_machine_gets_at_least_two_samples_within_the_budget(monkeypatch) -> None:
    assert BUDGET_SECONDS < 1
    monkeypatch.setattr(peak_module, "BUDGET_SECONDS", 0.0)
    monkeypatch.setattr(peak_module, "_time", simulated(1e10))
    assert "best of 2 samples" in measure_peak(device=CPU, precision="fp32").method


def test_a_precision_the_device_cannot_multiply_in_has_no_peak(monkeypatch) -> None:
    def refuse(*args):
        raise RuntimeError("bf16 products are not supported here")
    monkeypatch.setattr(peak_module, "_measure", refuse)
    peak = measure_peak(device=CPU, precision="bf16")
    assert peak.flops_per_sec is None and "not supported here" in peak.method
    with pytest.raises(ValueError, match="unknown precision"):
        measure_peak(device=CPU, precision="fp8")


@pytest.mark.parametrize("name, precision, tflops", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.5), ("NVIDIA H100 80GB HBM3", "fp32", 67.0),
    ("NVIDIA H100 PCIe", "bf16", 756.5), ("NVIDIA H200", "bf16", 989.5),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0), ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
    ("NVIDIA L4", "bf16", 121.0), ("NVIDIA A10", "fp32", 31.2),
    ("Tesla V100-SXM2-16GB", "fp32", 15.7), ("Tesla V100-PCIE-32GB", "fp32", 14.0),
    ("Tesla T4", "fp32", 8.1), ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
])
def test_published_peaks_are_found_by_torch_s_device_name(name: str, precision: str,
                                                           tflops: float) -> None:
    peak = published_peak(name, precision)
    assert peak is not None and peak.flops_per_sec == tflops * 1e12
    assert peak.kind == "published" and peak.source.startswith("https://")
    assert peak.threads is None and peak.name == name


@pytest.mark.parametrize("name, precision", [
    ("NVIDIA A10G", "bf16"), ("NVIDIA L40S", "fp32"), ("NVIDIA H100 NVL", "bf16"),
    ("NVIDIA H200 NVL", "bf16"), ("Tesla V100-SXM2-16GB", "bf16"), ("Tesla T4", "bf16"),
    ("NVIDIA GeForce RTX 4090 D", "fp32"),
])
def test_a_gpu_or_precision_the_table_lacks_has_no_published_peak(name: str,
                                                                   precision: str) -> None:
    assert published_peak(name, precision) is None


def test_every_published_entry_cites_its_source() -> None:
    assert len({gpu.label for gpu in PUBLISHED}) == len(PUBLISHED)
    for gpu in PUBLISHED:
        assert gpu.source.startswith("https://") and gpu.fp32 > 0
        assert gpu.bf16 is None or gpu.bf16 > gpu.fp32


def test_a_run_gets_one_peak_per_precision_and_thread_count_measured_once(
        monkeypatch) -> None:
    measured: list[tuple[str, int | None]] = []

    def fake(*, device, precision, threads):
        measured.append((precision, threads))
        return peak_module.Peak("cpu", "cpu", precision, threads, 1e9 * threads)
    monkeypatch.setattr(peak_module, "measure_peak", fake)
    monkeypatch.setattr(peak_module, "_CACHE", {})
    peaks = run_peaks(device=CPU, precisions=["fp32", "bf16", "fp32"], threads=[2, 1, 2])
    assert [(p["precision"], p["threads"], p["flops_per_sec"]) for p in peaks] == [
        ("bf16", 1, 1e9), ("bf16", 2, 2e9), ("fp32", 1, 1e9), ("fp32", 2, 2e9)]
    run_peaks(device=CPU, precisions=["fp32"], threads=[2])
    assert len(measured) == 4  # the second run of the process measured nothing again
    run_peaks(device=CPU, precisions=["fp32"], threads=[2], mode="strict")
    assert len(measured) == 5  # oneMKL's strict mode is another speed


def test_on_a_gpu_the_published_peak_stands_beside_the_measured_one(monkeypatch) -> None:
    monkeypatch.setattr(peak_module, "device_name", lambda device: "NVIDIA H100 PCIe")
    monkeypatch.setattr(peak_module, "_measure", lambda *args: (6e14, "simulated"))
    monkeypatch.setattr(peak_module, "_CACHE", {})
    peaks = run_peaks(device=torch.device("cuda"), precisions=["bf16"], threads=[4, 8])
    assert [(p["kind"], p["threads"], p["flops_per_sec"]) for p in peaks] == [
        ("measured", None, 6e14), ("published", None, 756.5e12)]
    assert peaks[1]["source"] == "https://www.nvidia.com/en-us/data-center/h100/"
