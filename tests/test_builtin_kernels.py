import torch

from harness_builtins.kernels import gru_recurrence, lstm_recurrence, tanh_recurrence


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


def test_tanh_recurrence_matches_autograd_loop() -> None:
    torch.manual_seed(1)
    args = [torch.randn(7, 4, 16, requires_grad=True), torch.randn(4, 16, requires_grad=True),
            (torch.randn(16, 16) * 0.2).requires_grad_(True)]
    copies = [a.detach().clone().requires_grad_(True) for a in args]
    ours, ref = tanh_recurrence(*args), reference(*copies)
    torch.testing.assert_close(ours, ref)
    weights = torch.randn_like(ref)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    for a, b in zip(args, copies):
        torch.testing.assert_close(a.grad, b.grad)


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
