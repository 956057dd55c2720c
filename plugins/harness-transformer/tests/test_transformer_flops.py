"""The transformer's declared training FLOPs per token against torch's FLOP counter over a
real forward and backward pass: on the CPU the counter sees every linear layer but counts
fused attention as zero, and with the math attention kernel it counts attention's full
(non-causal) products, of which the causal ones are the (L + 1) / 2L share."""

import pytest
import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness.plugin.contracts import ModelSettings, Workload
from harness_transformer import TRANSFORMER
from harness_transformer.model import CausalTransformer

V, C, B, T, CONTEXT = 28, 32, 3, 6, 10
CPU = torch.device("cpu")


def counted(model: CausalTransformer, state: torch.Tensor, backend: SDPBackend) -> int:
    """FLOPs torch's counter sees in one training pass of a (B, T) minibatch."""
    generator = torch.Generator().manual_seed(0)
    X, Y = (torch.randint(0, V, (B, T), generator=generator) for _ in range(2))
    model.zero_grad()
    with sdpa_kernel(backend), FlopCounterMode(display=False) as counter:
        logits, _ = model(X, state)
        F.cross_entropy(logits, Y.T.reshape(-1)).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("carries", [False, True])
def test_declared_flops_are_the_counted_products_with_causal_attention(layers: int,
                                                                      carries: bool) -> None:
    settings = ModelSettings(C, layers, options={"heads": 2, "context": CONTEXT})
    torch.manual_seed(0)
    model = CausalTransformer(V, settings, CPU)
    # a carried state fills the window: L = CONTEXT positions run through the blocks
    state = torch.randint(0, V, (B, CONTEXT - 1)) if carries else model.begin_state(B, CPU)
    L = CONTEXT if carries else T
    fused = counted(model, state, SDPBackend.FLASH_ATTENTION)  # attention counted as 0
    full_attention = counted(model, state, SDPBackend.MATH) - fused
    assert full_attention == 6 * layers * 2 * L * L * C * B  # Q K^T and A V, every pair
    causal = full_attention * (L + 1) // (2 * L)
    declared = TRANSFORMER.flops_per_token(Workload(V, settings, T, carries))
    assert declared * B * T == pytest.approx(fused + causal, rel=1e-12)


def test_a_fresh_state_gives_6n_plus_the_causal_attention_term() -> None:
    settings = ModelSettings(64, 3, options={"context": 128})
    flops = TRANSFORMER.flops_per_token(Workload(V, settings, 35, False))
    assert flops == 6 * (3 * 12 * 64 * 64 + 64 * V) + 6 * 3 * 64 * (35 + 1)
    carried = TRANSFORMER.flops_per_token(Workload(V, settings, 35, True))
    assert carried > flops  # 128 positions read for every 35 predicted
