"""The machine's matrix-product peak, which a run's achieved FLOP/s is a share of.

:func:`measure_peak` times square matrix products (``2 * n**3`` FLOPs each) in a precision
on a thread count: a first product sizes ``n`` so that one timed sample takes about
:data:`TARGET_SECONDS`, then the best of :data:`SAMPLES` samples is the peak (best, not
mean: the peak is what the hardware can do, and noise only ever slows a sample down), in
well under a second. On a GPU, :func:`published_peak` looks the device's name up in
:data:`PUBLISHED`, vendors' dense (no sparsity) figures with their source, shown beside
the measurement. :func:`run_peaks` gives both for a run's manifest.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from harness.machine.device import device_name, synchronize
from harness.machine.load import load_average

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGET_SECONDS = 0.03
"""How long one timed sample runs (one or more products of the chosen size)."""
SAMPLES = 5
BUDGET_SECONDS = 0.5
"""No sample starts after this long (at least two are taken): a busy machine, whose
samples run slow, still gets its measurement in well under a second."""
START_SIZE = 256
MAX_SIZE = {"cpu": 4096, "cuda": 8192}
"""The largest ``n`` tried (3 matrices of ``n * n``: 192 MiB in fp32 at 4096)."""
MEASURED, PUBLISHED_KIND = "measured", "published"


@dataclass(frozen=True)
class Peak:
    """One peak of a device in a precision: ``measured`` here (on ``threads`` torch
    threads; None on a GPU; ``load``: the machine's load average just before, as a busy
    machine measures low) or ``published`` (``source`` names where)."""

    device: str
    name: str
    precision: str
    threads: int | None
    flops_per_sec: float | None
    kind: str = MEASURED
    method: str = ""
    source: str = ""
    host: str = ""
    load: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PublishedGPU:
    """A GPU's published dense peaks in TFLOP/s: FP32 without tensor cores (torch's
    default for fp32 products on CUDA), BF16 on tensor cores with FP32 accumulation
    (None: no BF16 tensor cores). ``pattern`` matches torch's device name."""

    label: str
    pattern: str
    fp32: float
    bf16: float | None
    source: str


H100 = "https://www.nvidia.com/en-us/data-center/h100/"
PUBLISHED = (
    # NVIDIA's datasheets give tensor-core figures "with sparsity": the dense peak is half
    PublishedGPU("H100 SXM", r"H100 (80GB HBM3|SXM)", 67.0, 989.5, H100),
    PublishedGPU("H100 PCIe", r"H100 PCIe", 51.0, 756.5, H100),
    PublishedGPU("H200 SXM", r"H200(?! NVL)", 67.0, 989.5,
                 "https://www.nvidia.com/en-us/data-center/h200/"),
    PublishedGPU("A100", r"A100", 19.5, 312.0, "https://www.nvidia.com/en-us/data-center/a100/"),
    PublishedGPU("L4", r"\bL4\b", 30.3, 121.0, "https://www.nvidia.com/en-us/data-center/l4/"),
    PublishedGPU("A10", r"\bA10\b", 31.2, 125.0,
                 "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    PublishedGPU("V100 SXM2", r"V100-SXM2", 15.7, None,
                 "https://www.nvidia.com/en-us/data-center/v100/"),
    PublishedGPU("V100 PCIe", r"V100-PCIE", 14.0, None,
                 "https://www.nvidia.com/en-us/data-center/v100/"),
    PublishedGPU("T4", r"\bT4\b", 8.1, None, "https://www.nvidia.com/en-us/data-center/tesla-t4/"),
    PublishedGPU("GeForce RTX 4090", r"RTX 4090(?! D)", 82.6, 165.2,
                 "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/"
                 "nvidia-ada-gpu-architecture.pdf"),
)
"""Dense peaks by GPU; a name that matches none (an H100 NVL, an A10G) has none."""


def published_peak(name: str, precision: str) -> Peak | None:
    """The published dense peak of the GPU torch names ``name`` in ``precision``, or None
    when :data:`PUBLISHED` has no entry (or no figure) for it."""
    for gpu in PUBLISHED:
        if re.search(gpu.pattern, name, flags=re.IGNORECASE):
            tflops = gpu.fp32 if precision == "fp32" else gpu.bf16 if precision == "bf16" \
                else None
            if tflops is None:
                return None
            what = "FP32, no tensor cores" if precision == "fp32" else \
                "BF16 tensor cores, dense (half the datasheet's sparse figure)"
            return Peak("cuda", name, precision, None, tflops * 1e12, PUBLISHED_KIND,
                        f"{gpu.label}: {tflops:g} TFLOP/s, {what}", gpu.source)
    return None


def measure_peak(*, device: torch.device, precision: str, threads: int | None = None,
                 target_seconds: float = TARGET_SECONDS, samples: int = SAMPLES) -> Peak:
    """The best rate of square ``precision`` matrix products on ``device`` (on ``threads``
    torch threads on a CPU, this process's count when None; restored afterwards). A
    precision the device cannot multiply in gives a peak of None, its error as method."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(DTYPES)}")
    cpu = device.type == "cpu"
    before = torch.get_num_threads()
    threads = (threads or before) if cpu else None
    load = load_average()
    try:
        if cpu:
            torch.set_num_threads(threads)
        rate, method = _measure(device, DTYPES[precision], target_seconds, samples)
    except RuntimeError as error:
        rate, method = None, f"not measured: {type(error).__name__}: {error}"
    finally:
        torch.set_num_threads(before)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Peak(device.type, device_name(device), precision, threads, rate, MEASURED,
                f"{method}, at {stamp}" if rate else method, host=platform.node(), load=load)


def _measure(device: torch.device, dtype: torch.dtype, target: float,
             samples: int) -> tuple[float, str]:
    """(best FLOP/s, how it was measured)."""
    deadline = time.perf_counter() + BUDGET_SECONDS
    size, largest = START_SIZE, MAX_SIZE.get(device.type, MAX_SIZE["cpu"])
    for _ in range(3):  # grow n toward a product of about ``target`` seconds
        a, b, out = _operands(size, device, dtype)
        _time(a, b, out, 1, device)  # a size's first product pays for set-up
        seconds = _time(a, b, out, 1, device)
        cube = (target * 2 * size ** 3 / seconds / 2) ** (1 / 3)
        grown = min(largest, 64 * round(cube / 64))
        if grown <= size:
            break
        size = grown
    else:
        a, b, out = _operands(size, device, dtype)
        _time(a, b, out, 1, device)
        seconds = _time(a, b, out, 1, device)
    repeats = max(1, min(1000, math.ceil(target / seconds)))
    rates: list[float] = []
    while len(rates) < samples and (len(rates) < 2 or time.perf_counter() < deadline):
        rates.append(2 * size ** 3 * repeats / _time(a, b, out, repeats, device))
    return max(rates), (f"best of {len(rates)} samples of {repeats} x ({size} x {size}) @ "
                  f"({size} x {size}) products, 2 x {size}^3 FLOPs each")


def _operands(size: int, device: torch.device,
              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)  # not torch's global generator
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    return a, b, torch.empty_like(a)


def _time(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int,
          device: torch.device) -> float:
    """Seconds for ``repeats`` products ``a @ b`` (at least a nanosecond)."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    synchronize(device)
    return max(time.perf_counter() - started, 1e-9)


_CACHE: dict[tuple[str, str, int | None, str], Peak] = {}


def cached_peak(*, device: torch.device, precision: str, threads: int | None,
                mode: str = "") -> Peak:
    """:func:`measure_peak`, measured once per process for each device, precision, thread
    count and ``mode`` (a setting that changes the products' speed, such as oneMKL's
    strict mode): a process that starts many runs pays for it once."""
    key = (str(device), precision, threads if device.type == "cpu" else None, mode)
    if key not in _CACHE:
        _CACHE[key] = measure_peak(device=device, precision=precision, threads=threads)
    return _CACHE[key]


def run_peaks(*, device: torch.device, precisions: list[str], threads: list[int],
              mode: str = "") -> list[dict[str, Any]]:
    """The peaks a run's manifest stores: one measured per precision and thread count
    (one per precision off the CPU, where threads do not matter), and on a GPU the
    published one beside it when :data:`PUBLISHED` has it."""
    counts = sorted(set(threads)) if device.type == "cpu" else [None]
    peaks = []
    for precision in sorted(set(precisions)):
        for count in counts:
            peaks.append(cached_peak(device=device, precision=precision, threads=count,
                                     mode=mode).to_json())
        if device.type == "cuda":
            published = published_peak(device_name(device), precision)
            if published is not None:
                peaks.append(published.to_json())
    return peaks
