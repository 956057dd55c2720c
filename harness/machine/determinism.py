"""Results that do not depend on how many threads computed them.

torch's CPU matrix products come from oneMKL, which may split a product's inner sum
between threads (it does for ``(512, 1120) @ (1120, 28)``, the output layer's weight
gradient), so the same seed trained on 2 threads and on 1 thread (``--jobs 2`` on 2 cores)
gives numbers that differ in the last bits, and 500 epochs of training amplify that to
several percent of perplexity. oneMKL's strict conditional numerical reproducibility
(``MKL_CBWR=AUTO,STRICT``) makes its products bitwise independent of the thread count.
Most of torch's own CPU ops already are, not all: ``nn.LayerNorm``'s backward and
attention with dropout are not. :func:`thread_dependent_parameters` finds out for a model.
Strict mode costs speed (oneMKL's single-thread kernels are slower in it), so it is asked
for (``harness run --reproducible``), not the default.

oneMKL reads the setting at its first call in a process, so it must be made before the
first matrix product; processes started afterwards (``--jobs`` workers, a local Ray)
inherit it through the environment.
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
    os.environ[VARIABLE] = STRICT
    if thread_count_changes_results():
        raise ConfigError(
            f"--reproducible: matrix products still depend on the thread count; set "
            f"{VARIABLE}={STRICT} before the process's first matrix product (or torch's "
            f"BLAS is not oneMKL: {torch.backends.mkl.is_available()=})")


def thread_dependent_parameters(model: nn.Module, X: Tensor, Y: Tensor,
                                threads: int = 2) -> list[str]:
    """The names of ``model``'s parameters whose gradient comes out with other bits on
    ``threads`` threads than on 1; empty when the model's training step does not depend
    on the thread count.

    One step as the trainer takes it: a fresh state, ``forward`` over token ids ``X``
    (B, T), cross-entropy against ``Y`` (B, T), backward; torch's seed is reset before each
    pass, so dropout draws the same masks, and the vector math is warmed up on each thread
    count (:func:`warm_up_math`), so a first call's rounding is not taken for a
    dependence. The model's parameters are left as they were; its gradients hold the
    second pass's. ``--reproducible`` covers a model only where
    this is empty in strict mode: call :func:`make_thread_invariant` first, in a process
    that has not yet made a matrix product (a plugin's test runs it in a fresh one).
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

    Measured on 2 cores (torch 2.13.0 CPU, 2 threads): in a fresh process, the first
    ``tanh`` over a ``(32, 512)`` tensor rounded up to 2e-6 away from every later call on
    the same values in about one run in four (in none of 15 on 1 thread): a first-call
    effect in the threaded vector math, not something a seed controls. When that first
    call is a model's first step, a whole run changes: 500 epochs of
    ``scratch``/``sequential`` ended at perplexity 1.041 instead of 1.037. Later calls did
    not vary: after this warm-up, 16 fresh processes out of 16 gave the same
    first-minibatch gradients, where 4 of 12 had not. Cheap (well under a millisecond), so
    the runner calls it before every combination.
    """
    if device.type != "cpu":
        return
    x = torch.linspace(-4.0, 4.0, 1 << 16).reshape(64, 1024)
    for _ in range(2):
        x.tanh(), x.sigmoid(), x.exp(), x.abs().add_(1.0).log()
