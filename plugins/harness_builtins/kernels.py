"""Fused recurrences: the time loop of an RNN with a hand-written backward pass.

Autograd records every small per-step op and replays them one by one, and it computes the
recurrent weight's gradient as T small ``(H, B) @ (B, H)`` products. Here the forward loop
runs without recording, and the backward loop does only what the recurrence forces to be
sequential (the gradient flowing back through ``H @ W_hh``); the weight gradient is then
one ``(H, T*B) @ (T*B, H)`` product. The math is unchanged: tests compare values and
gradients with the plain autograd formulation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class RowLookup(torch.autograd.Function):
    """``one_hot(X) @ table``, computed as the row gather ``table[X]``: ``X`` (...) holds
    token ids, ``table`` is (V, N), the result (..., N) in ``dtype``.

    The same values and gradient as ``F.embedding``, whose CPU backward sorts the ids;
    here the gradient is one ``index_add_`` of the output gradient's rows (measured faster
    at the seed's shapes; see benchmarks/README.md). With a lower ``dtype`` (bf16) the rows
    are gathered from the table cast to it, and the gradient is still summed in the
    table's own dtype.
    """

    @staticmethod
    def forward(ctx: Any, X: Tensor, table: Tensor, dtype: torch.dtype) -> Tensor:
        ids = X.reshape(-1)
        ctx.save_for_backward(ids)
        ctx.rows, ctx.dtype = table.shape[0], table.dtype
        out = table.new_empty(*X.shape, table.shape[1], dtype=dtype)  # not a view: callers
        torch.index_select(table.to(dtype), 0, ids, out=out.view(-1, table.shape[1]))
        return out  # may write to it

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        (ids,) = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        return None, rows.new_zeros(ctx.rows, rows.shape[1]).index_add_(0, ids, rows), None


def row_lookup(X: Tensor, table: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``one_hot(X) @ table`` for token ids ``X``, in ``dtype`` (the table's by default);
    see :class:`RowLookup`."""
    return RowLookup.apply(X, table, dtype or table.dtype)


def batch_parts(batch_size: int, tensor: Tensor, *, reproducible: bool) -> int:
    """How many row blocks a recurrence over ``tensor`` (its device and dtype) splits its
    batch into: on CPU in fp32, one per intra-op thread where the batch divides evenly into
    blocks of at least 8 rows; else 1.

    A batch's rows are independent recurrences: as a batched product of P row blocks
    (``baddbmm_``) each core keeps its own rows from step to step, instead of reading
    rows the other core wrote after every shared product. Not in bf16, whose CPU batched
    products are slow, and not when ``reproducible`` (``ModelSettings.reproducible``):
    strict mode's batched products are slower, though blocks do not change its numbers.
    Measurements: benchmarks/README.md.
    """
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32 or reproducible:
        return 1
    parts = torch.get_num_threads()
    if parts < 2 or batch_size % parts or batch_size // parts < 8:
        return 1
    return parts


def row_blocks(tensor: Tensor, parts: int) -> Tensor:
    """``tensor`` (..., B, N) viewed as ``parts`` blocks of rows, (..., P, B / P, N); itself
    when ``parts`` is 1."""
    if parts == 1:
        return tensor
    *lead, batch, size = tensor.shape
    return tensor.reshape(*lead, parts, batch // parts, size)


def block_product(W: Tensor, parts: int) -> tuple[Tensor, Callable[..., Tensor]]:
    """``W`` and the in-place product ``C.op_(X, W)`` (``C += X @ W``) for ``parts`` row
    blocks: ``W`` expanded to (P, ...) with ``baddbmm_``, or ``W`` itself with ``addmm_``
    when there is one block."""
    if parts == 1:
        return W, Tensor.addmm_
    return W.expand(parts, *W.shape), Tensor.baddbmm_


class TanhRecurrence(torch.autograd.Function):
    """``H_t = tanh(A_t + H_{t-1} @ W_hh)`` for t = 1..T, returning all ``H_t``: (T, B, H).

    ``A`` (T, B, H) holds everything that does not depend on the previous state (input
    projection plus bias), so the caller can compute it for all steps in one product.
    Everything runs in ``dtype``; gradients come back in the inputs' own dtypes.

    Each step is two kernels in either direction: forward, ``H_t = A_t + H_{t-1} @ W_hh``
    accumulated in place into ``A``'s buffer, then ``tanh_``; backward, ``tanh_backward``
    in place, then ``dH_{t-1} += dA_t @ W_hh^T`` in place into a copy of the incoming
    gradient. The batch runs as :func:`batch_parts` row blocks (one when
    ``reproducible``). ``W_hh^T`` is made contiguous once per call: CPU BLAS runs the
    per-step product slower with a transposed view.

    With ``inplace``, ``A`` itself becomes that buffer and is returned as the hidden
    states (``ctx.mark_dirty``, so autograd refuses it where ``A``'s old values are still
    needed); it must then be contiguous and already in ``dtype``. Otherwise ``A`` is copied.
    """

    @staticmethod
    def forward(ctx: Any, A: Tensor, h0: Tensor, W_hh: Tensor, dtype: torch.dtype,
                inplace: bool, reproducible: bool) -> Tensor:
        ctx.dtypes = (A.dtype, h0.dtype, W_hh.dtype)
        h0, W_hh = h0.to(dtype), W_hh.to(dtype)
        if inplace:
            if A.dtype != dtype or not A.is_contiguous():
                raise TypeError(f"tanh_recurrence_ needs a contiguous {dtype} A, got a "
                                f"{'' if A.is_contiguous() else 'non-contiguous '}{A.dtype} one")
            ctx.mark_dirty(A)
            hs = A
        else:
            hs = A.to(dtype, memory_format=torch.contiguous_format, copy=True)
        ctx.parts = parts = batch_parts(hs.shape[1], hs, reproducible=reproducible)
        blocks, h = row_blocks(hs, parts), row_blocks(h0, parts)  # (T, P, B / P, H)
        W, product_ = block_product(W_hh, parts)
        for t in range(hs.shape[0]):
            h = product_(blocks[t], h, W).tanh_()
        ctx.save_for_backward(h0, W_hh, hs)
        return hs

    @staticmethod
    def backward(ctx: Any, grad_hs: Tensor
                 ) -> tuple[Tensor, Tensor | None, Tensor, None, None, None]:
        h0, W_hh, hs = ctx.saved_tensors
        grad = torch.empty_like(hs).copy_(grad_hs)  # dL/dH_t, then (in place) dL/dA_t
        W_t = W_hh.t().contiguous()
        blocks, grad_blocks = row_blocks(hs, ctx.parts), row_blocks(grad, ctx.parts)
        W_ts, product_ = block_product(W_t, ctx.parts)
        tanh_backward = torch.ops.aten.tanh_backward.grad_input  # the overload: no lookup
        for t in range(hs.shape[0] - 1, -1, -1):
            # dL/dA_t = dL/dH_t * (1 - H_t^2); then the part of dL/dH_{t-1} that flows
            # back through H_{t-1} @ W_hh joins the part from step t - 1's own output
            tanh_backward(grad_blocks[t], blocks[t], grad_input=grad_blocks[t])
            if t > 0:
                product_(grad_blocks[t - 1], grad_blocks[t], W_ts)
        # dL/dH_0, only where the initial state wants it (a carried state is detached)
        carry = grad[0] @ W_t if ctx.needs_input_grad[1] else None
        # dL/dW_hh = sum_t H_{t-1}^T dA_t: H_0's term, then the rest as one large product
        size = hs.shape[-1]
        grad_W = (h0.t() @ grad[0]).addmm_(hs[:-1].reshape(-1, size).t(),
                                           grad[1:].reshape(-1, size))
        dtype_A, dtype_h0, dtype_W = ctx.dtypes
        return (grad.to(dtype_A), None if carry is None else carry.to(dtype_h0),
                grad_W.to(dtype_W), None, None, None)


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype matrix products run in: autocast's, where it is on, else the tensor's."""
    device = tensor.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype


def tanh_recurrence(A: Tensor, h0: Tensor, W_hh: Tensor, *, reproducible: bool = False
                    ) -> Tensor:
    """All hidden states of a tanh RNN, in autocast's dtype where it is on; see
    :class:`TanhRecurrence` (``reproducible``: the run's mode, see :func:`batch_parts`)."""
    return TanhRecurrence.apply(A, h0, W_hh, compute_dtype(A), False, reproducible)


def tanh_recurrence_(A: Tensor, h0: Tensor, W_hh: Tensor, *, reproducible: bool = False
                     ) -> Tensor:
    """:func:`tanh_recurrence` computed in ``A``'s own memory: ``A`` (T, B, H), contiguous
    and in autocast's dtype where it is on, is overwritten with the hidden states and
    returned. For callers that build ``A`` for this call only: it saves a (T, B, H) buffer
    and a pass over it."""
    return TanhRecurrence.apply(A, h0, W_hh, compute_dtype(A), True, reproducible)


class LSTMRecurrence(torch.autograd.Function):
    """d2l §9.2's LSTM over all steps: ``P_t = X_t + H_{t-1} @ W_h`` with the gates side by
    side ``[I | F | O | C~]`` (B, 4H); ``C_t = F * C_{t-1} + I * C~``, ``H_t = O * tanh(C_t)``.

    ``X`` (T, B, 4H) is the input projection plus biases for every step. Returns all hidden
    states and all memory cells, each (T, B, H). The backward pass walks the steps once,
    doing per step only the product the recurrence forces (``dP_t @ W_h^T``), and computes
    ``dW_h`` as one ``(H, T*B) @ (T*B, 4H)`` product.
    """

    @staticmethod
    def forward(ctx: Any, X: Tensor, h0: Tensor, c0: Tensor, W_h: Tensor,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        ctx.dtypes = (X.dtype, h0.dtype, c0.dtype, W_h.dtype)
        X, h, c, W_h = X.to(dtype), h0.to(dtype), c0.to(dtype), W_h.to(dtype)
        n = h.shape[-1]
        gates = torch.empty_like(X)  # activated [I | F | O | C~] per step
        hs = X.new_empty(X.shape[:-1] + (n,))
        cs, tanh_cs = torch.empty_like(hs), torch.empty_like(hs)
        for t in range(X.shape[0]):
            g = torch.addmm(X[t], h, W_h, out=gates[t])
            g[:, : 3 * n].sigmoid_()
            g[:, 3 * n:].tanh_()
            i, f, o, c_tilda = g.chunk(4, dim=1)
            c = torch.addcmul(f * c, i, c_tilda, out=cs[t])
            torch.tanh(c, out=tanh_cs[t])
            h = torch.mul(o, tanh_cs[t], out=hs[t])
        ctx.save_for_backward(h0.to(dtype), c0.to(dtype), W_h, gates, hs, cs, tanh_cs)
        return hs, cs

    @staticmethod
    def backward(ctx: Any, grad_hs: Tensor | None, grad_cs: Tensor | None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, None]:
        h0, c0, W_h, gates, hs, cs, tanh_cs = ctx.saved_tensors
        grad_hs = torch.zeros_like(hs) if grad_hs is None else grad_hs.to(hs.dtype)
        grad_X = torch.empty_like(gates)
        W_t = W_h.t().contiguous()  # see TanhRecurrence: faster per-step products
        carry_h, carry_c = torch.zeros_like(h0), torch.zeros_like(c0)
        for t in range(hs.shape[0] - 1, -1, -1):
            i, f, o, c_tilda = gates[t].chunk(4, dim=1)
            c_prev = cs[t - 1] if t > 0 else c0
            dh = grad_hs[t] + carry_h
            dc = carry_c + dh * o * (1 - tanh_cs[t].square())
            if grad_cs is not None:
                dc = dc + grad_cs[t]
            d_i, d_f, d_o, d_c = grad_X[t].chunk(4, dim=1)
            torch.mul(dc * c_tilda, i * (1 - i), out=d_i)
            torch.mul(dc * c_prev, f * (1 - f), out=d_f)
            torch.mul(dh * tanh_cs[t], o * (1 - o), out=d_o)
            torch.mul(dc * i, 1 - c_tilda.square(), out=d_c)
            carry_h = grad_X[t] @ W_t
            carry_c = dc * f
        previous = torch.cat((h0.unsqueeze(0), hs[:-1]))
        size = hs.shape[-1]
        grad_W = previous.reshape(-1, size).t() @ grad_X.reshape(-1, 4 * size)
        dtype_X, dtype_h0, dtype_c0, dtype_W = ctx.dtypes
        return (grad_X.to(dtype_X), carry_h.to(dtype_h0), carry_c.to(dtype_c0),
                grad_W.to(dtype_W), None)


def lstm_recurrence(X: Tensor, h0: Tensor, c0: Tensor, W_h: Tensor) -> tuple[Tensor, Tensor]:
    """All hidden states and memory cells of an LSTM layer; see :class:`LSTMRecurrence`."""
    return LSTMRecurrence.apply(X, h0, c0, W_h, compute_dtype(X))


class GRURecurrence(torch.autograd.Function):
    """d2l §9.1's GRU over all steps: ``[Z | R] = sigmoid(X_zr_t + H_{t-1} @ W_hzr)``,
    ``H~ = tanh(X_h_t + (R * H_{t-1}) @ W_hh)``, ``H_t = Z * H_{t-1} + (1 - Z) * H~``.

    ``X_zr`` (T, B, 2H) and ``X_h`` (T, B, H) are the input projections plus biases. Returns
    all hidden states (T, B, H); weight gradients are one product each after the loop.
    """

    @staticmethod
    def forward(ctx: Any, X_zr: Tensor, X_h: Tensor, h0: Tensor, W_hzr: Tensor, W_hh: Tensor,
                dtype: torch.dtype) -> Tensor:
        ctx.dtypes = (X_zr.dtype, X_h.dtype, h0.dtype, W_hzr.dtype, W_hh.dtype)
        X_zr, X_h, h = X_zr.to(dtype), X_h.to(dtype), h0.to(dtype)
        W_hzr, W_hh = W_hzr.to(dtype), W_hh.to(dtype)
        zr = torch.empty_like(X_zr)
        h_tildas, rhs, hs = torch.empty_like(X_h), torch.empty_like(X_h), torch.empty_like(X_h)
        for t in range(X_h.shape[0]):
            torch.addmm(X_zr[t], h, W_hzr, out=zr[t]).sigmoid_()
            z, r = zr[t].chunk(2, dim=1)
            rh = torch.mul(r, h, out=rhs[t])
            h_tilda = torch.addmm(X_h[t], rh, W_hh, out=h_tildas[t]).tanh_()
            h = torch.add(h_tilda, z * (h - h_tilda), out=hs[t])  # Z*H + (1-Z)*H~
        ctx.save_for_backward(h0.to(dtype), W_hzr, W_hh, zr, h_tildas, rhs, hs)
        return hs

    @staticmethod
    def backward(ctx: Any, grad_hs: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, None]:
        h0, W_hzr, W_hh, zr, h_tildas, rhs, hs = ctx.saved_tensors
        grad_hs = grad_hs.to(hs.dtype)
        grad_zr, grad_h = torch.empty_like(zr), torch.empty_like(hs)
        W_hzr_t, W_hh_t = W_hzr.t().contiguous(), W_hh.t().contiguous()  # see TanhRecurrence
        carry = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            z, r = zr[t].chunk(2, dim=1)
            h_prev = hs[t - 1] if t > 0 else h0
            h_tilda = h_tildas[t]
            dh = grad_hs[t] + carry
            torch.mul(dh * (1 - z), 1 - h_tilda.square(), out=grad_h[t])  # d pre-tanh
            d_rh = grad_h[t] @ W_hh_t
            d_z, d_r = grad_zr[t].chunk(2, dim=1)
            torch.mul(dh * (h_prev - h_tilda), z * (1 - z), out=d_z)
            torch.mul(d_rh * h_prev, r * (1 - r), out=d_r)
            carry = torch.addmm(dh * z + d_rh * r, grad_zr[t], W_hzr_t)
        previous = torch.cat((h0.unsqueeze(0), hs[:-1]))
        size = hs.shape[-1]
        grad_W_hzr = previous.reshape(-1, size).t() @ grad_zr.reshape(-1, 2 * size)
        grad_W_hh = rhs.reshape(-1, size).t() @ grad_h.reshape(-1, size)
        d = ctx.dtypes
        return (grad_zr.to(d[0]), grad_h.to(d[1]), carry.to(d[2]), grad_W_hzr.to(d[3]),
                grad_W_hh.to(d[4]), None)


def gru_recurrence(X_zr: Tensor, X_h: Tensor, h0: Tensor, W_hzr: Tensor, W_hh: Tensor
                   ) -> Tensor:
    """All hidden states of a GRU layer; see :class:`GRURecurrence`."""
    return GRURecurrence.apply(X_zr, X_h, h0, W_hzr, W_hh, compute_dtype(X_h))
