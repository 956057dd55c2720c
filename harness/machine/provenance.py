"""Where a run's numbers came from, beyond its settings: the harness source (git revision
and dirty tree, or the installed version), the CPU's model and the ISA flags that decide
its speed, torch's build (MKL, oneDNN, the CPU kernels it picked), the GPU (driver, CUDA,
cuDNN) and the environment variables that change maths or threading.

Everything here is cheap (a few ``git`` calls, the first block of ``/proc/cpuinfo``,
strings torch already holds), so every run records it in its manifest
(:func:`harness.drive.environment.collect_environment`). What cannot be told is None, never
a guess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from harness.version import DISTRIBUTION

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``harness`` package's folder: its git checkout, if any, is the source of the run."""

GIT_SECONDS = 5.0
"""The longest a ``git`` call may take before the installed version is recorded instead."""

CPUINFO = Path("/proc/cpuinfo")

SPEED_FLAGS = (
    # x86 (the ``flags`` line): vector width, fused multiply-add, and the bf16/int8 units
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "amx_fp16",
    # Arm (the ``Features`` line): NEON, half precision, SVE, bf16 and int8 matrix products
    "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
)
"""The CPU flags that decide how fast (and whether natively) torch's kernels run."""

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""Flags of a CPU that multiplies bf16 natively; without one, bf16 is emulated."""

ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2",
                                      "AVX512_CORE", "AVX512_CORE_VNNI"})
"""``ONEDNN_MAX_CPU_ISA`` values that keep oneDNN off the CPU's bf16 instructions."""

MATH_VARIABLES = (
    # threads and where they run
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_DYNAMIC", "KMP_AFFINITY",
    "KMP_BLOCKTIME", "GOMP_CPU_AFFINITY", "MKL_DYNAMIC",
    # which kernels and instructions the maths uses
    "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
    "DNNL_DEFAULT_FPMATH_MODE", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE", "TORCH_MKLDNN_MATMUL_MIN_DIM",
    # GPU maths and which GPU
    "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "HIP_VISIBLE_DEVICES",
)
"""Environment variables that change torch's numbers, speed or threads when set."""


def harness_source(*, package_dir: Path = PACKAGE_DIR,
                   seconds: float = GIT_SECONDS) -> dict[str, Any]:
    """Which code ran: ``{"source": "git", "revision", "dirty"}`` when ``package_dir`` is
    tracked in a git checkout (dirty: tracked files changed, untracked ones ignored), else
    ``{"source": "distribution", "distribution", "version", "why"}`` from the installed
    metadata, ``why`` saying what ruled git out (every release reads the same version)."""
    git = shutil.which("git")
    why = "git not found"
    if git is not None:
        try:
            revision = _git(git, package_dir, seconds, "rev-parse", "--verify", "HEAD")
            # an installed copy inside another project's checkout is not that project's code
            _git(git, package_dir, seconds, "ls-files", "--error-unmatch", "--", "__init__.py")
            changed = _git(git, package_dir, seconds, "status", "--porcelain",
                           "--untracked-files=no").splitlines()
            return {"source": "git", "revision": revision, "dirty": bool(changed)}
        except subprocess.TimeoutExpired:
            why = f"git took over {seconds:g} s"
        except (OSError, subprocess.CalledProcessError):
            why = "the harness is not in a git checkout"
    try:
        installed: str | None = version(DISTRIBUTION)
    except PackageNotFoundError:
        installed = None
    return {"source": "distribution", "distribution": DISTRIBUTION, "version": installed,
            "why": why}


def _git(git: str, folder: Path, seconds: float, *args: str) -> str:
    """A git command's output in ``folder``; CalledProcessError when it fails."""
    done = subprocess.run([git, "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=seconds, check=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    return done.stdout.strip()


@lru_cache(maxsize=4)
def cpuinfo(*, path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's block of ``/proc/cpuinfo`` (field -> value); empty where
    there is none (macOS, Windows)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    if fields:
                        break
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        return {}
    return fields


def cpu_flags(*, path: Path = CPUINFO) -> list[str] | None:
    """The :data:`SPEED_FLAGS` this CPU has, in that order; None where the OS does not
    list its flags."""
    info = cpuinfo(path=path)
    line = info.get("flags", info.get("Features"))
    if line is None:
        return None
    present = set(line.split())
    return [flag for flag in SPEED_FLAGS if flag in present]


def onednn_isa_limit(*, environ: Mapping[str, str] = os.environ) -> str | None:
    """The ISA ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) holds oneDNN
    to, upper-cased; None when neither is set."""
    for name in ONEDNN_ISA_VARIABLES:
        if environ.get(name, "").strip():
            return environ[name].strip().upper()
    return None


def native_bf16(*, flags: list[str] | None,
                environ: Mapping[str, str] = os.environ) -> bool | None:
    """Whether the CPU multiplies bf16 in hardware for torch: it has one of
    :data:`BF16_FLAGS` and ``ONEDNN_MAX_CPU_ISA`` does not hold oneDNN below them (which
    falls back to emulation, many times slower). None when the flags are unknown."""
    if flags is None:
        return None
    return (any(flag in flags for flag in BF16_FLAGS)
            and onednn_isa_limit(environ=environ) not in ONEDNN_ISAS_WITHOUT_BF16)


def bf16_support_text(*, flags: list[str] | None,
                      environ: Mapping[str, str] = os.environ) -> str:
    """One clause on the CPU's bf16 support, for a refusal or a warning: which bf16 flags
    it has, and whether ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN off them."""
    if flags is None:
        return "this CPU's flags are unknown"
    has = [flag for flag in BF16_FLAGS if flag in flags]
    if not has:
        return "this CPU has no avx512_bf16 or amx_bf16"
    limit = onednn_isa_limit(environ=environ)
    text = f"this CPU has {', '.join(has)}"
    if limit in ONEDNN_ISAS_WITHOUT_BF16:
        text += f", but ONEDNN_MAX_CPU_ISA={limit} keeps oneDNN off them"
    return text


_MKL = re.compile(r"Math Kernel Library Version ([^\s-]+)")
_ONEDNN = re.compile(r"(?:MKL-DNN|oneDNN) v(\S+)")
_SETTING = re.compile(r"\b(BLAS_INFO|USE_OPENMP|COMMIT_SHA)=([^,\s]*)")


@lru_cache(maxsize=1)
def torch_build() -> dict[str, Any]:
    """How torch was built, as ``torch.__config__.show()`` says: MKL and oneDNN versions
    (None where not built in), its BLAS, OpenMP, the commit; and the CPU kernels it chose
    (``cpu_capability``: DEFAULT, AVX2, AVX512, ...; ``ATEN_CPU_CAPABILITY`` lowers it)."""
    shown = torch.__config__.show()
    settings = dict(_SETTING.findall(shown))
    mkl, onednn = _MKL.search(shown), _ONEDNN.search(shown)
    return {
        "mkl": mkl.group(1) if mkl else None,
        "onednn": onednn.group(1) if onednn else None,
        "blas": settings.get("BLAS_INFO") or None,
        "openmp": settings.get("USE_OPENMP") == "ON",
        "commit": settings.get("COMMIT_SHA") or None,
        "cpu_capability": cpu_capability(),
    }


def cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels run with (None on an old torch)."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


def gpu_info(device: torch.device) -> dict[str, Any] | None:
    """A CUDA (or ROCm) device's name, compute capability, memory, driver, and torch's
    CUDA/HIP and cuDNN versions; None for any other device."""
    if device.type != "cuda":
        return None
    properties = torch.cuda.get_device_properties(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "name": properties.name,
        "capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "driver": nvidia_driver(),
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": cudnn,
    }


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def nvidia_driver(*, path: Path = NVIDIA_DRIVER) -> str | None:
    """The NVIDIA kernel driver's version (``550.54.15``), from ``/proc`` on Linux or
    NVML where installed; None where neither tells."""
    try:
        found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", path.read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        import pynvml  # type: ignore[import-not-found]  # nvidia-ml-py, where installed

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return driver.decode() if isinstance(driver, bytes) else str(driver)
    except Exception:  # noqa: BLE001 - not installed, or no NVML on this machine
        return None


def math_environment(*, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The :data:`MATH_VARIABLES` that are set, with their values (an empty dict: none)."""
    return {name: environ[name] for name in MATH_VARIABLES if name in environ}
