import pytest
import torch
from torch.nn import functional as F

from harness_builtins.kernels import (
    batch_parts,
    gru_recurrence,
    lstm_recurrence,
    row_lookup,
    tanh_recurrence,
    tanh_recurrence_,
)


def reference(A, h, W):
    hs = []
    for a in A:
        h = torch.tanh(a + h @ W)
        hs.append(h)
    return torch.stack(hs)


def test_tanh_recurrence_passes_gradcheck_in_double() -> None:
    torch.manual_seed(0)
    A = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    W = torch.randn(4, 4, dtype=torch.float64, requires_grad=True) * 0.5
    W = W.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(tanh_recurrence, (A, h0, W))


@pytest.mark.parametrize("steps, batch, size, reproducible, parts",
                         [(7, 4, 16, False, 1), (6, 16, 32, False, 2), (6, 16, 32, True, 1)])
def test_tanh_recurrence_matches_autograd_loop(two_threads, steps, batch, size, reproducible,
                                               parts) -> None:
    torch.manual_seed(1)
    args = [torch.randn(steps, batch, size, requires_grad=True),
            torch.randn(batch, size, requires_grad=True),
            (torch.randn(size, size) * 0.2).requires_grad_(True)]
    # one block, or the row-block path
    assert batch_parts(batch, args[0], reproducible=reproducible) == parts
    copies = [a.detach().clone().requires_grad_(True) for a in args]
    ours = tanh_recurrence(*args, reproducible=reproducible)
    ref = reference(*copies)
    torch.testing.assert_close(ours, ref)
    weights = torch.randn_like(ref)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    for a, b in zip(args, copies):
        torch.testing.assert_close(a.grad, b.grad)


def test_batch_parts_splits_fp32_cpu_batches_by_thread_count(two_threads) -> None:
    cpu32 = torch.zeros(1)
    assert batch_parts(32, cpu32, reproducible=False) == 2
    assert batch_parts(16, cpu32, reproducible=False) == 2
    assert batch_parts(14, cpu32, reproducible=False) == 1  # blocks of fewer than 8 rows
    assert batch_parts(33, cpu32, reproducible=False) == 1  # does not divide
    assert batch_parts(32, cpu32.bfloat16(), reproducible=False) == 1
    torch.set_num_threads(1)
    assert batch_parts(32, cpu32, reproducible=False) == 1


def test_reproducible_mode_keeps_one_block(two_threads) -> None:
    # strict mode's batched products are slower
    assert batch_parts(32, torch.zeros(1), reproducible=True) == 1


def test_the_mode_comes_from_the_caller_not_the_environment(two_threads, monkeypatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")  # what --reproducible sets; not read here
    assert batch_parts(32, torch.zeros(1), reproducible=False) == 2


def test_inplace_tanh_recurrence_overwrites_its_input_with_the_states() -> None:
    torch.manual_seed(6)
    leaf = torch.randn(5, 3, 8, requires_grad=True)
    h0, W = torch.randn(3, 8), (torch.randn(8, 8) * 0.3).requires_grad_(True)
    A = leaf * 1.0  # an intermediate, as the model's looked-up inputs are
    hs = tanh_recurrence_(A, h0, W)
    assert hs is A
    torch.testing.assert_close(hs, reference(leaf.detach(), h0, W.detach()))
    hs.sum().backward()
    expected = torch.autograd.grad(reference(leaf, h0, W).sum(), (leaf, W))
    torch.testing.assert_close(leaf.grad, expected[0])
    torch.testing.assert_close(W.grad, expected[1])


def test_inplace_tanh_recurrence_refuses_what_it_cannot_overwrite() -> None:
    h0, W = torch.zeros(3, 8), torch.zeros(8, 8)
    with pytest.raises(TypeError, match="contiguous torch.float32 A"):
        tanh_recurrence_(torch.zeros(5, 8, 3).transpose(1, 2), h0, W)
    with pytest.raises(RuntimeError, match="leaf"):  # autograd guards values it needs
        tanh_recurrence_(torch.zeros(5, 3, 8, requires_grad=True), h0, W)


def test_row_lookup_is_one_hot_times_the_table() -> None:
    torch.manual_seed(7)
    X = torch.randint(0, 6, (4, 5))
    table = torch.randn(6, 3, requires_grad=True)
    copy = table.detach().clone().requires_grad_(True)
    ours = row_lookup(X, table)
    ref = F.one_hot(X, 6).to(torch.float32) @ copy
    torch.testing.assert_close(ours, ref)
    weights = torch.randn_like(ref)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(table.grad, copy.grad)


def test_bf16_under_autocast_keeps_fp32_gradients() -> None:
    torch.manual_seed(2)
    A = torch.randn(3, 2, 8, requires_grad=True)
    h0 = torch.zeros(2, 8)
    W = (torch.randn(8, 8) * 0.3).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hs = tanh_recurrence(A, h0, W)
    assert hs.dtype == torch.bfloat16
    hs.float().sum().backward()
    assert A.grad.dtype == W.grad.dtype == torch.float32
    torch.testing.assert_close(hs.float(), reference(A.detach(), h0, W.detach()),
                               atol=0.05, rtol=0.05)


def lstm_reference(X, h, c, W):
    n = h.shape[1]
    hs, cs = [], []
    for x in X:
        p = x + h @ W
        i, f, o = torch.sigmoid(p[:, :3 * n]).chunk(3, 1)
        c = f * c + i * torch.tanh(p[:, 3 * n:])
        h = o * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


def gru_reference(X_zr, X_h, h, W_hzr, W_hh):
    hs = []
    for a, b in zip(X_zr, X_h):
        z, r = torch.sigmoid(a + h @ W_hzr).chunk(2, 1)
        h_tilda = torch.tanh(b + (r * h) @ W_hh)
        h = z * h + (1 - z) * h_tilda
        hs.append(h)
    return torch.stack(hs)


def double(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_(True)


def test_lstm_recurrence_passes_gradcheck_and_matches_the_equations() -> None:
    torch.manual_seed(3)
    args = (double(5, 3, 16), double(3, 4), double(3, 4), double(4, 16, scale=0.5))
    assert torch.autograd.gradcheck(lstm_recurrence, args)
    for ours, ref in zip(lstm_recurrence(*args), lstm_reference(*args)):
        torch.testing.assert_close(ours, ref)


def test_gru_recurrence_passes_gradcheck_and_matches_the_equations() -> None:
    torch.manual_seed(4)
    args = (double(5, 3, 8), double(5, 3, 4), double(3, 4), double(4, 8, scale=0.5),
            double(4, 4, scale=0.5))
    assert torch.autograd.gradcheck(gru_recurrence, args)
    torch.testing.assert_close(gru_recurrence(*args), gru_reference(*args))


def test_row_lookup_in_bf16_sums_the_gradient_in_the_tables_dtype() -> None:
    torch.manual_seed(8)
    X = torch.randint(0, 3, (40, 8))  # about 100 rows per id: bf16 sums would drift
    table = torch.randn(3, 4, requires_grad=True)
    rows = row_lookup(X, table, torch.bfloat16)
    assert rows.dtype == torch.bfloat16
    torch.testing.assert_close(rows, table.detach().bfloat16()[X])
    grad = torch.randn(40, 8, 4).bfloat16()
    rows.backward(grad)
    expected = F.one_hot(X, 3).float().reshape(-1, 3).t() @ grad.float().reshape(-1, 4)
    assert table.grad.dtype == torch.float32
    torch.testing.assert_close(table.grad, expected)
