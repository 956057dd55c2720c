"""What a result depends on besides its settings: the code, versions, hardware, threads.

The block a run's manifest stores as ``environment`` (docs/reference/provenance.md), and
what ``harness compare`` sets side by side (:mod:`harness.results.envdiff`). Collecting it
takes a few milliseconds: three ``git`` calls, one read of ``/proc/cpuinfo``, and strings
torch already holds.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from harness.version import __version__
from harness.machine.device import available_cores, cpu_name, device_name
from harness.machine.provenance import (
    cpu_flags,
    gpu_info,
    harness_source,
    math_environment,
    torch_build,
)
from harness.plugin.registry import Registry


def collect_environment(device: torch.device, registry: Registry, *,
                        reproducible: bool) -> dict[str, Any]:
    """The environment of a run, as stored in its manifest: the harness version and its
    source (git revision and dirty tree, or the installed version), Python and torch,
    torch's build (MKL, oneDNN, CPU kernels), the CPU and its speed flags, threads, the
    device (and a CUDA GPU's driver, CUDA and cuDNN), the environment variables that
    change maths or threads, and the plugins."""
    return {
        "harness": __version__,
        "harness_source": harness_source(),
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "torch": torch.__version__,
        "torch_build": torch_build(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "math_env": math_environment(),
        "reproducible": reproducible,
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "gpu": gpu_info(device),
        "plugins": [
            {"plugin": p.plugin, "distribution": p.distribution, "version": p.version}
            for p in registry.plugins
        ],
        "plugin_failures": [vars(f) for f in registry.failures],
    }
