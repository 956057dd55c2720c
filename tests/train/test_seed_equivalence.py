"""The optimised built-in models train exactly like the seed's own code.

Same parameters, same batches, 20 steps of the seed's training step (cross-entropy, clipping
at 1, SGD with lr 1): the losses agree within 1e-4 at every step. The batch is the seed
recipe's 32 rows, on two threads, so the scratch RNN runs its recurrence in two row blocks
as it does in the benchmarks. The seed's side is
``benchmarks/d2l_seed.py``, a verbatim copy of d2l's code path.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.plugin.contracts import ModelSettings
from harness.train.trainer import clip_gradients, evaluation_batches
from harness_builtins.gated import build_scratch_gru, build_scratch_lstm
from harness_builtins.rnn import build_scratch

import d2l_seed  # benchmarks/d2l_seed.py, on sys.path through conftest

CPU = torch.device("cpu")
BUILDERS = {"scratch": build_scratch, "scratch-gru": build_scratch_gru,
            "scratch-lstm": build_scratch_lstm}


def batches(steps: int, batch_size: int = 32, num_steps: int = 12, vocab: int = 28):
    corpus = torch.randint(0, vocab, (steps * batch_size * num_steps + 1,),
                           generator=torch.Generator().manual_seed(1)).tolist()
    # sequential partitioning from offset 0: the same batches for both sides
    return list(evaluation_batches(corpus, batch_size, num_steps))[:steps]


def d2l_order(model: nn.Module) -> list[nn.Parameter]:
    """The model's parameters in the order of d2l's ``get_params`` (gates, then output)."""
    if hasattr(model, "layers"):  # ScratchStack: one layer's gate parameters, then W_hq, b_q
        return [*model.layers[0].parameters(), model.W_hq, model.b_q]
    return list(model.parameters())


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_20_training_steps_give_the_seeds_losses(name: str, two_threads: None) -> None:
    torch.manual_seed(0)
    ours = BUILDERS[name](28, ModelSettings(64), CPU)
    get_params, init_state, forward_fn = d2l_seed.SCRATCH[name]
    seed = d2l_seed.RNNModelScratch(28, 64, CPU, get_params, init_state, forward_fn)
    with torch.no_grad():  # the seed's parameters, in get_params order, are ours
        for theirs, mine in zip(seed.params, d2l_order(ours), strict=True):
            theirs.copy_(mine)
    optimizer = torch.optim.SGD(ours.parameters(), lr=1.0)
    loss = nn.CrossEntropyLoss()
    state_ours = state_seed = None
    for step, (X, Y) in enumerate(batches(20)):
        y = Y.T.reshape(-1)
        # ours: the harness trainer's step
        state_ours = (ours.begin_state(X.shape[0], CPU) if state_ours is None
                      else tuple(s.detach() for s in state_ours))
        logits, state_ours = ours(X, state_ours)
        l_ours = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        l_ours.backward()
        clip_gradients(list(ours.parameters()), 1.0)
        optimizer.step()
        # the seed's train_epoch_ch8 step
        if state_seed is None:
            state_seed = seed.begin_state(batch_size=X.shape[0], device=CPU)
        else:
            for s in state_seed:
                s.detach_()
        y_hat, state_seed = seed(X, state_seed)
        l_seed = loss(y_hat, y.long()).mean()
        l_seed.backward()
        d2l_seed.grad_clipping(seed, 1)
        d2l_seed.sgd(seed.params, 1.0, batch_size=1)
        assert abs(l_ours.item() - l_seed.item()) < 1e-4, (name, step)
