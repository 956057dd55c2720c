"""What a result depends on besides its settings: versions, hardware, threads."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from harness.version import __version__
from harness.machine.device import cpu_name, device_name
from harness.plugin.registry import Registry


def collect_environment(device: torch.device, registry: Registry, *,
                        reproducible: bool) -> dict[str, Any]:
    """The environment of a run, as stored in its manifest."""
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "reproducible": reproducible,
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "plugins": [
            {"plugin": p.plugin, "distribution": p.distribution, "version": p.version}
            for p in registry.plugins
        ],
        "plugin_failures": [vars(f) for f in registry.failures],
    }
