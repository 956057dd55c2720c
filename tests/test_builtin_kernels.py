import torch

from harness_builtins.kernels import tanh_recurrence


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
