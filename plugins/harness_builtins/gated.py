"""The gated RNNs of d2l chapter 9: GRU (§9.1) and LSTM (§9.2), from scratch and concise,
and deep versions of both (§9.3).

- ``scratch-gru`` / ``scratch-lstm``: d2l's ``get_params`` and ``gru`` / ``lstm`` functions
  as modules. One layer holds d2l's parameters under d2l's names (``W_xz, W_hz, b_z, ...``;
  weights drawn from N(0, 0.01^2) in d2l's order, biases zero); the output layer is
  ``W_hq, b_q``. The state is d2l's: ``(H,)`` for the GRU, ``(H, C)`` for the LSTM.
- ``gru`` / ``lstm``: torch ``nn.GRU`` / ``nn.LSTM`` over one-hot input, in the same
  wrapper as ``nnrnn`` (:class:`harness_builtins.rnn.TorchRNN`).

``--layers N`` stacks N layers (d2l §9.3), with ``--dropout`` on the outputs of every layer
but the last, as torch does. A scratch model's state is its layers' states in order:
``(H_1, ..., H_N)`` for the GRU, ``(H_1, C_1, ..., H_N, C_N)`` for the LSTM (d2l's for N = 1).

For speed, without changing the math: the one-hot input product is a row lookup, all
gates' input projections for all steps are computed before the time loop, gates that read
the same input share one product per step, the output layer runs once after the loop, and
the loop runs in fused kernels (:mod:`harness_builtins.kernels`). Tests check outputs and
gradients against a transcription of d2l's code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness import hookimpl
from harness.plugin.contracts import ModelSettings, ModelSpec
from harness_builtins.kernels import gru_recurrence, lstm_recurrence, row_lookup
from harness_builtins.rnn import build_torch_rnn, recurrent_flops


def _normal(*shape: int, device: torch.device) -> nn.Parameter:
    """d2l's ``normal``: N(0, 0.01^2)."""
    return nn.Parameter(torch.randn(size=shape, device=device) * 0.01)


def _three(num_inputs: int, num_hiddens: int, device: torch.device
           ) -> tuple[nn.Parameter, nn.Parameter, nn.Parameter]:
    """d2l's ``three()``: one gate's input weights, hidden weights and (zero) bias."""
    return (_normal(num_inputs, num_hiddens, device=device),
            _normal(num_hiddens, num_hiddens, device=device),
            nn.Parameter(torch.zeros(num_hiddens, device=device)))


class ScratchLayer(nn.Module, ABC):
    """One recurrent layer from scratch. Subclasses hold d2l's gate parameters and say
    which input weights the gates have (:meth:`input_weights`) and how one layer runs over
    all time steps (:meth:`forward`)."""

    state_size = 1
    """How many tensors the layer's state holds."""

    def __init__(self, num_hiddens: int) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens

    @abstractmethod
    def input_weights(self) -> tuple[Tensor, Tensor]:
        """All gates' ``W_x?`` side by side ``(inputs, G * H)`` and their biases ``(G * H,)``."""

    def project_tokens(self, X: Tensor) -> Tensor:
        """``one_hot(X) @ W_x? + b_?`` for every gate, as a row lookup: ``(T, B, G * H)``."""
        W, b = self.input_weights()
        return row_lookup(X, W + b)  # one_hot(X) @ W + b, the bias added to V rows only

    def project(self, inputs: Tensor) -> Tensor:
        """``inputs @ W_x? + b_?`` for every gate and step of ``inputs`` ``(T, B, I)``."""
        W, b = self.input_weights()
        return inputs @ W + b

    def begin_state(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        """d2l's ``init_gru_state`` / ``init_lstm_state``: zeros of shape ``(B, H)``."""
        return tuple(torch.zeros((batch_size, self.num_hiddens), device=device)
                     for _ in range(self.state_size))

    @abstractmethod
    def forward(self, projected: Tensor, state: tuple[Tensor, ...]
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run over ``projected`` ``(T, B, G * H)``; return the hidden states ``(T, B, H)``
        and the new state."""


class GRULayer(ScratchLayer):
    """d2l §9.1's ``gru`` for one layer: update gate Z, reset gate R, candidate state."""

    def __init__(self, num_inputs: int, num_hiddens: int, device: torch.device) -> None:
        super().__init__(num_hiddens)
        self.W_xz, self.W_hz, self.b_z = _three(num_inputs, num_hiddens, device)  # update gate
        self.W_xr, self.W_hr, self.b_r = _three(num_inputs, num_hiddens, device)  # reset gate
        self.W_xh, self.W_hh, self.b_h = _three(num_inputs, num_hiddens, device)  # candidate

    def input_weights(self) -> tuple[Tensor, Tensor]:
        return (torch.cat((self.W_xz, self.W_xr, self.W_xh), dim=1),
                torch.cat((self.b_z, self.b_r, self.b_h)))

    def forward(self, projected: Tensor, state: tuple[Tensor, ...]
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        (H,) = state
        x_zr, x_h = projected.split((2 * self.num_hiddens, self.num_hiddens), dim=-1)
        W_hzr = torch.cat((self.W_hz, self.W_hr), dim=1)  # Z and R both read H: one product
        hiddens = gru_recurrence(x_zr, x_h, H, W_hzr, self.W_hh)  # (T, B, H)
        return hiddens, (hiddens[-1],)


class LSTMLayer(ScratchLayer):
    """d2l §9.2's ``lstm`` for one layer: input, forget and output gates, memory cell C."""

    state_size = 2

    def __init__(self, num_inputs: int, num_hiddens: int, device: torch.device) -> None:
        super().__init__(num_hiddens)
        self.W_xi, self.W_hi, self.b_i = _three(num_inputs, num_hiddens, device)  # input gate
        self.W_xf, self.W_hf, self.b_f = _three(num_inputs, num_hiddens, device)  # forget gate
        self.W_xo, self.W_ho, self.b_o = _three(num_inputs, num_hiddens, device)  # output gate
        self.W_xc, self.W_hc, self.b_c = _three(num_inputs, num_hiddens, device)  # candidate

    def input_weights(self) -> tuple[Tensor, Tensor]:
        return (torch.cat((self.W_xi, self.W_xf, self.W_xo, self.W_xc), dim=1),
                torch.cat((self.b_i, self.b_f, self.b_o, self.b_c)))

    def forward(self, projected: Tensor, state: tuple[Tensor, ...]
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        H, C = state
        W_h = torch.cat((self.W_hi, self.W_hf, self.W_ho, self.W_hc), dim=1)  # all read H
        hiddens, cells = lstm_recurrence(projected, H, C, W_h)  # (T, B, H) each
        return hiddens, (hiddens[-1], cells[-1])


class ScratchStack(nn.Module):
    """d2l's ``RNNModelScratch`` around ``num_layers`` scratch layers (§9.3's deep RNN) and
    the output layer ``W_hq, b_q``. With one layer it is d2l's GRU or LSTM model exactly.

    The layers are created before ``W_hq``, so with one layer the random draws happen in
    d2l's ``get_params`` order and a given seed gives d2l's initial values.
    """

    def __init__(self, layer: Callable[[int, int, torch.device], ScratchLayer],
                 vocab_size: int, settings: ModelSettings, device: torch.device) -> None:
        super().__init__()
        self.vocab_size, self.num_hiddens = vocab_size, settings.num_hiddens
        self.dropout = settings.dropout
        self.layers = nn.ModuleList(
            layer(vocab_size if i == 0 else settings.num_hiddens, settings.num_hiddens, device)
            for i in range(settings.num_layers)
        )
        self.W_hq = _normal(settings.num_hiddens, vocab_size, device=device)
        self.b_q = nn.Parameter(torch.zeros(vocab_size, device=device))

    def begin_state(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        return tuple(s for layer in self.layers for s in layer.begin_state(batch_size, device))

    def forward(self, X: Tensor, state: tuple[Tensor, ...]
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        new_state: list[Tensor] = []
        hiddens = X.T  # token ids (T, B) for the first layer
        for i, layer in enumerate(self.layers):
            if i == 0:
                projected = layer.project_tokens(hiddens)
            else:  # dropout between layers, as torch's nn.GRU / nn.LSTM
                projected = layer.project(F.dropout(hiddens, self.dropout, self.training))
            k = len(new_state)
            hiddens, layer_state = layer(projected, state[k: k + layer.state_size])
            new_state.extend(layer_state)
        outputs = hiddens.reshape(-1, self.num_hiddens) @ self.W_hq + self.b_q  # (T * B, V)
        return outputs, tuple(new_state)


def build_scratch_gru(vocab_size: int, settings: ModelSettings, device: torch.device
                      ) -> nn.Module:
    return ScratchStack(GRULayer, vocab_size, settings, device)


def build_scratch_lstm(vocab_size: int, settings: ModelSettings, device: torch.device
                       ) -> nn.Module:
    return ScratchStack(LSTMLayer, vocab_size, settings, device)


def build_gru(vocab_size: int, settings: ModelSettings, device: torch.device) -> nn.Module:
    return build_torch_rnn(nn.GRU, vocab_size, settings, device)


def build_lstm(vocab_size: int, settings: ModelSettings, device: torch.device) -> nn.Module:
    return build_torch_rnn(nn.LSTM, vocab_size, settings, device)


MODELS = (
    ModelSpec("scratch-gru", build_scratch_gru,
              "GRU from scratch (d2l 9.1), one-hot input; --layers stacks them (9.3)",
              flops_per_token=partial(recurrent_flops, gates=3)),  # update, reset, candidate
    ModelSpec("scratch-lstm", build_scratch_lstm,
              "LSTM from scratch (d2l 9.2), state (H, C); --layers stacks them (9.3)",
              flops_per_token=partial(recurrent_flops, gates=4)),  # i, f, o gates, candidate
    ModelSpec("gru", build_gru, "torch nn.GRU + nn.Linear over one-hot input (d2l 9.1, 9.3)",
              flops_per_token=partial(recurrent_flops, gates=3)),
    ModelSpec("lstm", build_lstm, "torch nn.LSTM + nn.Linear over one-hot input (d2l 9.2, 9.3)",
              flops_per_token=partial(recurrent_flops, gates=4)),
)


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)
