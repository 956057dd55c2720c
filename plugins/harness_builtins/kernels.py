"""Fused recurrences: the time loop of an RNN with a hand-written backward pass.

Autograd records every small per-step op and replays them one by one, and it computes the
recurrent weight's gradient as T small ``(H, B) @ (B, H)`` products. Here the forward loop
runs without recording, and the backward loop does only what the recurrence forces to be
sequential (the gradient flowing back through ``H @ W_hh``); the weight gradient is then
one ``(H, T*B) @ (T*B, H)`` product. The math is unchanged: tests compare values and
gradients with the plain autograd formulation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class TanhRecurrence(torch.autograd.Function):
    """``H_t = tanh(A_t + H_{t-1} @ W_hh)`` for t = 1..T, returning all ``H_t``: (T, B, H).

    ``A`` (T, B, H) holds everything that does not depend on the previous state (input
    projection plus bias), so the caller can compute it for all steps in one product.
    Everything runs in ``dtype``; gradients come back in the inputs' own dtypes.
    """

    @staticmethod
    def forward(ctx: Any, A: Tensor, h0: Tensor, W_hh: Tensor, dtype: torch.dtype) -> Tensor:
        ctx.dtypes = (A.dtype, h0.dtype, W_hh.dtype)
        A, h, W_hh = A.to(dtype), h0.to(dtype), W_hh.to(dtype)
        hs = torch.empty_like(A)
        for t in range(A.shape[0]):
            torch.addmm(A[t], h, W_hh, out=hs[t])
            h = hs[t].tanh_()
        ctx.save_for_backward(h0.to(dtype), W_hh, hs)
        return hs

    @staticmethod
    def backward(ctx: Any, grad_hs: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        h0, W_hh, hs = ctx.saved_tensors
        grad_hs = grad_hs.to(hs.dtype)
        dtanh = 1 - hs.square()  # (T, B, H): tanh'(pre-activation), from the outputs
        grad_A = torch.empty_like(hs)
        W_t = W_hh.t()
        carry = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            torch.mul(grad_hs[t] + carry, dtanh[t], out=grad_A[t])
            carry = grad_A[t] @ W_t
        previous = torch.cat((h0.unsqueeze(0), hs[:-1]))  # H_{t-1} for every step
        size = hs.shape[-1]
        grad_W = previous.reshape(-1, size).t() @ grad_A.reshape(-1, size)
        dtype_A, dtype_h0, dtype_W = ctx.dtypes
        return grad_A.to(dtype_A), carry.to(dtype_h0), grad_W.to(dtype_W), None


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype matrix products run in: autocast's, where it is on, else the tensor's."""
    device = tensor.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype


def tanh_recurrence(A: Tensor, h0: Tensor, W_hh: Tensor) -> Tensor:
    """All hidden states of a tanh RNN, in autocast's dtype where it is on; see
    :class:`TanhRecurrence`."""
    return TanhRecurrence.apply(A, h0, W_hh, compute_dtype(A))
