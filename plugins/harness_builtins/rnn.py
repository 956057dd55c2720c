"""The two RNNs of the seed: d2l §8.5 from scratch (``scratch``) and §8.6 concise (``nnrnn``).

Both follow the model contract in :mod:`harness.plugin.contracts`: ``forward(X, state)`` takes
token ids ``(B, T)`` and returns time-major logits ``(T * B, V)`` and the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness import hookimpl
from harness.plugin.contracts import ModelSettings, ModelSpec, Workload
from harness_builtins.kernels import compute_dtype, row_lookup, tanh_recurrence_


class RNNScratch(nn.Module):
    """d2l §8.5's ``RNNModelScratch`` with ``get_params``/``init_rnn_state``/``rnn``.

    Parameters are d2l's: ``W_xh, W_hh, b_h, W_hq, b_q``, weights drawn from
    N(0, 0.01^2), biases zero. The state is d2l's one-tuple ``(H,)``.

    ``one_hot(X) @ W_xh + b_h`` is the row lookup ``(W_xh + b_h)[X]`` for all steps at
    once (same values; gradients equal up to summation order), and the output layer runs
    once over all steps; only ``H @ W_hh`` stays in the time loop, a fused kernel
    (:mod:`harness_builtins.kernels`). ``reproducible`` (``--reproducible``) runs the batch
    as one block whatever the thread count (:func:`harness_builtins.kernels.batch_parts`).
    """

    def __init__(self, vocab_size: int, num_hiddens: int, device: torch.device, *,
                 reproducible: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.reproducible = reproducible

        def normal(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(size=shape, device=device) * 0.01)

        self.W_xh = normal(vocab_size, num_hiddens)
        self.W_hh = normal(num_hiddens, num_hiddens)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens, device=device))
        self.W_hq = normal(num_hiddens, vocab_size)
        self.b_q = nn.Parameter(torch.zeros(vocab_size, device=device))

    def begin_state(self, batch_size: int, device: torch.device) -> tuple[Tensor]:
        return (torch.zeros((batch_size, self.num_hiddens), device=device),)

    def forward(self, X: Tensor, state: tuple[Tensor]) -> tuple[Tensor, tuple[Tensor]]:
        (H,) = state
        # one_hot(X.T) @ W_xh + b_h for every step at once, (T, B, H), in the dtype the
        # recurrence runs in (bf16 under autocast; the table's gradient stays fp32)
        table = self.W_xh + self.b_h
        inputs = row_lookup(X.T, table, compute_dtype(table))
        hiddens = tanh_recurrence_(inputs, H, self.W_hh,  # (T, B, H), in inputs' memory
                                   reproducible=self.reproducible)
        outputs = torch.addmm(self.b_q, hiddens.reshape(-1, self.num_hiddens), self.W_hq)
        return outputs, (hiddens[-1],)  # outputs: (T * B, V)


class TorchRNN(nn.Module):
    """d2l §8.6's ``RNNModel``: a torch recurrent layer over one-hot input, then a linear
    layer. ``layer`` is ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (LSTM's state is a tuple)."""

    def __init__(self, layer: nn.RNNBase, vocab_size: int) -> None:
        super().__init__()
        self.rnn, self.vocab_size = layer, vocab_size
        self.num_hiddens = layer.hidden_size
        self.linear = nn.Linear(self.num_hiddens, vocab_size)

    def begin_state(self, batch_size: int, device: torch.device) -> Tensor | tuple[Tensor, Tensor]:
        shape = (self.rnn.num_layers, batch_size, self.num_hiddens)
        if isinstance(self.rnn, nn.LSTM):
            return (torch.zeros(shape, device=device), torch.zeros(shape, device=device))
        return torch.zeros(shape, device=device)

    def forward(self, X: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, object]:
        inputs = F.one_hot(X.T.long(), self.vocab_size).to(torch.float32)  # (T, B, V)
        Y, state = self.rnn(inputs, state)  # (T, B, H)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state


def build_scratch(vocab_size: int, settings: ModelSettings, device: torch.device) -> nn.Module:
    """d2l §8.5's model: one layer, so ``--dropout`` (between layers) has no effect, as for
    torch's one-layer RNNs, and ``--layers`` other than 1 is refused, not ignored."""
    if settings.num_layers != 1:
        raise ValueError(f"it is d2l §8.5's one-layer RNN and cannot stack "
                         f"--layers {settings.num_layers}; nnrnn, gru, lstm, scratch-gru and "
                         "scratch-lstm can")
    return RNNScratch(vocab_size, settings.num_hiddens, device,
                      reproducible=settings.reproducible)


def build_torch_rnn(layer_cls: type[nn.RNNBase], vocab_size: int, settings: ModelSettings,
                    device: torch.device) -> TorchRNN:
    """d2l's concise model around ``layer_cls`` (``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``):
    ``settings.num_layers`` stacked layers (§9.3), with dropout on the outputs of every layer
    but the last (torch's rule, so it has no effect with one layer)."""
    layer = layer_cls(vocab_size, settings.num_hiddens, num_layers=settings.num_layers,
                      dropout=settings.dropout if settings.num_layers > 1 else 0.0)
    return TorchRNN(layer, vocab_size).to(device)


def recurrent_flops(work: Workload, *, gates: int) -> int:
    """The training FLOPs per token (:data:`harness.plugin.contracts.FlopsFn`) of d2l's
    recurrent models with ``gates`` input and hidden products per layer (1: RNN, 3: GRU,
    4: LSTM); declared as ``partial(recurrent_flops, gates=...)``.

    Per token and layer, each gate multiplies the layer's input by an ``(I, H)`` matrix and
    the previous hidden state by an ``(H, H)`` one (``I`` is the vocabulary for the first
    layer, whose one-hot input d2l defines as a dense product, ``H`` above it); then one
    ``(H, V)`` output layer: ``6 * (G * (V*H + H*H) + (layers - 1) * G * 2*H*H + H*V)``.
    A row lookup computing the one-hot product (``scratch``) is counted as the product it
    stands for, so two implementations of one model have the same FLOPs and their FLOP/s
    compare the implementations.
    """
    V, H, layers = work.vocab_size, work.settings.num_hiddens, work.settings.num_layers
    first = gates * (V * H + H * H)
    above = (layers - 1) * gates * (H * H + H * H)
    return 6 * (first + above + H * V)


def build_nnrnn(vocab_size: int, settings: ModelSettings, device: torch.device) -> nn.Module:
    return build_torch_rnn(nn.RNN, vocab_size, settings, device)


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(ModelSpec("scratch", build_scratch,
                       "RNN from scratch (d2l 8.5), tanh, one-hot input",
                       flops_per_token=partial(recurrent_flops, gates=1)))
    register(ModelSpec("nnrnn", build_nnrnn,
                       "torch nn.RNN + nn.Linear over one-hot input (d2l 8.6)",
                       flops_per_token=partial(recurrent_flops, gates=1)))
