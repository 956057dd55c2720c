"""Provenance: the harness source, CPU flags, torch's build, the GPU and the variables that
change maths, as every manifest records them (harness.machine.provenance)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import harness.machine.provenance as provenance
from harness.machine.provenance import (
    bf16_support_text,
    cpu_flags,
    cpuinfo,
    gpu_info,
    harness_source,
    math_environment,
    native_bf16,
    nvidia_driver,
    torch_build,
)
from harness.version import __version__

REPO = Path(__file__).resolve().parents[2]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@needs_git
def test_a_checkout_gives_its_revision_and_whether_tracked_files_changed(tmp_path: Path) -> None:
    package = tmp_path / "repo" / "harness"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", ".")
    git(tmp_path / "repo", "commit", "-q", "-m", "first")
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    assert harness_source(package_dir=package) == {"source": "git", "revision": head,
                                                   "dirty": False}
    (package / "new.py").write_text("")  # untracked: not dirty
    assert harness_source(package_dir=package)["dirty"] is False
    (package / "__init__.py").write_text("x = 2\n")
    assert harness_source(package_dir=package) == {"source": "git", "revision": head,
                                                   "dirty": True}


@needs_git
def test_this_checkout_is_its_own_source() -> None:
    source = harness_source()
    if source["source"] == "git":  # run from the repository (installed editable)
        assert source["revision"] == git(REPO, "rev-parse", "HEAD")
        assert isinstance(source["dirty"], bool)
    else:
        assert source["version"] == __version__


@needs_git
def test_a_copy_inside_another_projects_checkout_is_the_installed_version(
        tmp_path: Path) -> None:
    """A venv inside some project: its site-packages is not that project's code."""
    project = tmp_path / "project"
    package = project / ".venv" / "site-packages" / "harness"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (project / ".gitignore").write_text(".venv/\n")
    git(project, "init", "-q")
    git(project, "add", ".gitignore")
    git(project, "commit", "-q", "-m", "first")
    assert harness_source(package_dir=package) == {
        "source": "distribution", "distribution": "rnn-harness", "version": __version__,
        "why": "the harness is not in a git checkout"}


def test_without_git_or_a_checkout_the_installed_version_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert harness_source(package_dir=tmp_path)["why"] == "the harness is not in a git checkout"
    monkeypatch.setattr(provenance.shutil, "which", lambda name: None)
    assert harness_source(package_dir=REPO / "harness") == {
        "source": "distribution", "distribution": "rnn-harness", "version": __version__,
        "why": "git not found"}


X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: another
flags\t\t: fpu
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp sve bf16 i8mm\nCPU part\t: 0xd40\n"


def test_the_flags_that_decide_speed_are_read_from_the_first_processor(tmp_path: Path) -> None:
    (tmp_path / "x86").write_text(X86)
    (tmp_path / "arm").write_text(ARM)
    (tmp_path / "none").write_text("processor\t: 0\nmodel name\t: mystery\n")
    assert cpuinfo(path=tmp_path / "x86")["model name"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_flags(path=tmp_path / "x86") == ["sse4_2", "avx", "avx2", "fma", "avx512f",
                                                "avx512bw", "avx512_bf16", "amx_tile",
                                                "amx_bf16"]
    assert cpu_flags(path=tmp_path / "arm") == ["asimd", "asimdhp", "sve", "bf16", "i8mm"]
    assert cpu_flags(path=tmp_path / "none") is None
    assert cpu_flags(path=tmp_path / "missing") is None and cpuinfo(path=tmp_path / "gone") == {}


def test_this_machines_flags_are_its_cpuinfos() -> None:
    if not Path("/proc/cpuinfo").is_file():
        assert cpu_flags() is None
        return
    listed = set(open("/proc/cpuinfo").read().split("\n\n")[0].split())
    assert cpu_flags() == [f for f in provenance.SPEED_FLAGS if f in listed]


@pytest.mark.parametrize(("flags", "environ", "native", "text"), [
    (["avx2", "avx512_bf16"], {}, True, "this CPU has avx512_bf16"),
    (["avx2", "amx_bf16"], {}, True, "this CPU has amx_bf16"),
    (["asimd", "bf16"], {}, True, "this CPU has bf16"),
    (["avx2", "avx512f"], {}, False, "this CPU has no avx512_bf16 or amx_bf16"),
    (["avx512_bf16"], {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False,
     "this CPU has avx512_bf16, but ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off them"),
    (["avx512_bf16"], {"DNNL_MAX_CPU_ISA": "avx512_core"}, False,
     "this CPU has avx512_bf16, but ONEDNN_MAX_CPU_ISA=AVX512_CORE keeps oneDNN off them"),
    (["avx512_bf16"], {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True,
     "this CPU has avx512_bf16"),
    (None, {}, None, "this CPU's flags are unknown"),
])
def test_native_bf16_needs_the_flags_and_onednn_allowed_to_use_them(
        flags, environ, native, text) -> None:
    assert native_bf16(flags=flags, environ=environ) is native
    assert bf16_support_text(flags=flags, environ=environ) == text


def test_torch_build_names_mkl_onednn_and_the_cpu_kernels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    build = torch_build()
    assert build["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if torch.backends.mkldnn.is_available():
        assert build["onednn"] and build["onednn"][0].isdigit()
    shown = ("PyTorch built with:\n  - Intel(R) oneAPI Math Kernel Library Version "
             "2024.2-Product Build 20240605 for Intel(R) 64 architecture applications\n"
             "  - Intel(R) MKL-DNN v3.5.3 (Git Hash 66f0cb9eb66affd2da3bf5f8d897376f04aae6af)\n"
             "  - Build settings: BLAS_INFO=mkl, COMMIT_SHA=abc123, USE_OPENMP=ON, \n")
    monkeypatch.setattr(torch.__config__, "show", lambda: shown)
    torch_build.cache_clear()
    try:
        assert torch_build() == {"mkl": "2024.2", "onednn": "3.5.3", "blas": "mkl",
                                 "openmp": True, "commit": "abc123",
                                 "cpu_capability": build["cpu_capability"]}
        monkeypatch.setattr(torch.__config__, "show", lambda: "PyTorch built with:\n")
        torch_build.cache_clear()
        assert torch_build() == {"mkl": None, "onednn": None, "blas": None, "openmp": False,
                                 "commit": None, "cpu_capability": build["cpu_capability"]}
    finally:
        torch_build.cache_clear()


def test_a_cuda_device_gives_its_gpu_driver_cuda_and_cudnn(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert gpu_info(torch.device("cpu")) is None
    properties = SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0,
                                 total_memory=85_520_809_984)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: properties)
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(provenance, "nvidia_driver", lambda: "550.54.15")
    assert gpu_info(torch.device("cuda:0")) == {
        "name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "memory_gib": 79.6,
        "driver": "550.54.15", "cuda": "12.4", "hip": getattr(torch.version, "hip", None),
        "cudnn": 90100}


@pytest.mark.parametrize("text", [
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
    "GCC version:  gcc version 12.2.0\n",
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build\n",
])
def test_the_nvidia_driver_version_is_read_from_proc(text: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "version").write_text(text)
    assert nvidia_driver(path=tmp_path / "version") == "550.54.15"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML either: unknown
    assert nvidia_driver(path=tmp_path / "missing") is None


def test_only_the_variables_that_change_maths_are_kept() -> None:
    environ = {"OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2", "HOME": "/root",
               "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PATH": "/bin"}
    assert math_environment(environ=environ) == {
        "OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert math_environment(environ={}) == {}


def test_collecting_it_all_takes_well_under_a_second() -> None:
    torch_build.cache_clear()
    cpuinfo.cache_clear()
    started = time.perf_counter()
    harness_source()
    cpu_flags()
    torch_build()
    math_environment()
    gpu_info(torch.device("cpu"))
    assert time.perf_counter() - started < 0.5
