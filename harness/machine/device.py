"""Choosing the device, naming it, and reading its clock honestly."""

from __future__ import annotations

import os
import platform
from contextlib import AbstractContextManager

import torch

from harness.errors import ConfigError
from harness.machine.provenance import cpuinfo

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; choose from: {', '.join(DEVICE_CHOICES)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested, but torch sees no CUDA device")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps requested, but torch sees no MPS device")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; choose from: {', '.join(DEVICE_CHOICES)}")
    return device


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A human name for the device: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_name()


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a clock read after it measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def precision_autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast a forward pass in ``precision`` runs under, the same for training, the
    plan-time probe and the thread check: ``bf16`` is bfloat16 matrix products with fp32
    weights (autocast), ``fp32`` is autocast off."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
