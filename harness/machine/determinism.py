"""Results that do not depend on how many threads computed them.

oneMKL, behind torch's CPU matrix products, may split a product's inner sum between
threads (the output layer's weight gradient, for one), so the same seed on 2 threads and
on 1 differs in the last bits, and training amplifies that (benchmarks/README.md). Its
strict mode (``MKL_CBWR=AUTO,STRICT``) makes products independent of the thread count;
most torch CPU ops already are, but not ``nn.LayerNorm``'s backward or attention with
dropout (:func:`thread_dependent_parameters` checks a model). Strict mode is slower, so it
is asked for (``harness run --reproducible``), not the default.

oneMKL reads the setting at its first call, so it must be set before a process's first
matrix product; processes started later (workers, a local Ray) inherit it.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness.errors import ConfigError

VARIABLE = "MKL_CBWR"
STRICT = "AUTO,STRICT"


def thread_count_changes_results() -> bool:
    """Whether a product oneMKL splits between threads gives different bits on 1 thread
    than on this process's thread count (False where there is only one thread)."""
    threads = torch.get_num_threads()
    if threads < 2:
        return False
    generator = torch.Generator().manual_seed(0)
    H = torch.randn(1120, 512, generator=generator)
    dY = torch.randn(1120, 28, generator=generator)
    try:
        torch.set_num_threads(1)
        one = H.t() @ dY
    finally:
        torch.set_num_threads(threads)
    return not torch.equal(one, H.t() @ dY)


def make_thread_invariant() -> None:
    """Have oneMKL give the same bits on any number of threads, in this process and the
    processes it starts; check that it took effect.

    Raises :class:`ConfigError` when the products still depend on the thread count: this
    process made a matrix product before the call, or torch is not built with oneMKL.
    """
    before = os.environ.get(VARIABLE)
    os.environ[VARIABLE] = STRICT
    if thread_count_changes_results():
        if before is None:  # refused: leave the process as it was
            del os.environ[VARIABLE]
        else:
            os.environ[VARIABLE] = before
        raise ConfigError(
            f"--reproducible: matrix products still depend on the thread count; set "
            f"{VARIABLE}={STRICT} before the process's first matrix product (or torch's "
            f"BLAS is not oneMKL: {torch.backends.mkl.is_available()=})")


def thread_dependent_parameters(model: nn.Module, *, X: Tensor, Y: Tensor,
                                threads: int = 2) -> list[str]:
    """The names of ``model``'s parameters whose gradient comes out with other bits on
    ``threads`` threads than on 1; empty when the model's training step does not depend
    on the thread count.

    One training step on token ids ``X`` and targets ``Y`` (B, T) from a fresh state,
    torch's seed reset before each pass (dropout draws the same masks) and the vector math
    warmed up on each thread count (:func:`warm_up_math`). Parameters are left as they
    were; the gradients hold the second pass's. ``--reproducible`` covers a model only
    where this is empty in strict mode (call :func:`make_thread_invariant` first, in a
    process that has made no matrix product yet).
    """
    device = next(model.parameters()).device
    before = torch.get_num_threads()
    grads = []
    try:
        for count in (1, threads):
            torch.set_num_threads(count)
            warm_up_math(device)
            torch.manual_seed(0)
            model.zero_grad(set_to_none=True)
            logits, _ = model(X, model.begin_state(X.shape[0], device))
            F.cross_entropy(logits.float(), Y.T.reshape(-1)).backward()
            grads.append({name: p.grad.clone() for name, p in model.named_parameters()
                          if p.grad is not None})
    finally:
        torch.set_num_threads(before)
    one, many = grads
    return [name for name in one if not torch.equal(one[name], many[name])]


def reproducible_mode() -> bool:
    """Whether this process asked oneMKL for thread-count-independent results."""
    return os.environ.get(VARIABLE, "").replace(" ", "").upper().endswith(",STRICT")


def warm_up_math(device: torch.device = torch.device("cpu")) -> None:
    """Make the first calls of torch's vectorised elementwise functions (``tanh``,
    ``sigmoid``, ``exp``, ``log``) on a throw-away tensor, so that a model's are not.

    In a fresh process the first threaded call may round differently from every later
    call on the same values, which no seed controls; when that call is a model's first
    step, the whole run changes (benchmarks/README.md). Cheap, so it runs before every
    combination.
    """
    if device.type != "cpu":
        return
    x = torch.linspace(-4.0, 4.0, 1 << 16).reshape(64, 1024)
    for _ in range(2):
        x.tanh(), x.sigmoid(), x.exp(), x.abs().add_(1.0).log()
