"""A small causal Transformer language model (GPT-style) under the harness's model contract.

The contract (``harness.plugin.contracts.LanguageModel``) takes token ids ``X`` ``(B, T)``
and a state, and returns time-major logits ``(T * B, V)`` and a new state. A Transformer
needs only the tokens before a sequence to continue it, so its *state is its context
window*: the last ``max_len - 1`` token ids it has seen, a ``(B, S)`` integer tensor.

- ``begin_state`` is an empty ``(B, 0)`` tensor: with a fresh state every minibatch
  (``random``, ``sequential-reset``) the context is exactly the minibatch's steps.
- With ``sequential`` the state carries earlier minibatches' tokens, so a minibatch sees up
  to ``max_len - T`` tokens before it; no gradient crosses minibatches (integer state).
- Text generation feeds one token at a time with the returned state, so each step attends
  over the prefix and what was generated so far.

Positions are learned embeddings numbered from the start of the window. The model records
the longest window it was trained on (buffer ``trained_context``, saved in ``state_dict``)
and in eval mode looks back no further, so it never reaches untrained positions.

Shapes in comments: B batch, T steps of ``X``, L = S + T tokens attended, C = width
(``num_hiddens``), V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness.plugin.contracts import ModelSettings, Workload

MAX_LEN = 128
"""Position embeddings, hence the most tokens one forward pass attends over."""

HEAD_DIM = 64


def training_flops(work: Workload) -> float:
    """Training FLOPs per trained token (:data:`harness.plugin.contracts.FlopsFn`): 6 per
    weight each position's forward pass uses, plus causal attention's products.

    A forward pass runs ``L`` positions through the blocks and predicts the last ``T``
    (``num_steps``): ``L = T`` from a fresh state, and, once a carried state has filled the
    window, ``L`` = the ``context`` option (steady state; the first minibatches read fewer).
    Per block and position: ``qkv`` ``3*C*C``, ``proj`` ``C*C`` and the MLP ``8*C*C``
    multiply-accumulates; causal attention's ``Q @ K^T`` and ``A @ V`` each take ``C`` per
    (query, key) pair with key <= query, ``L*(L+1)/2`` pairs. The head is ``C*V`` for each of
    the ``T`` predicted positions. Embeddings are row lookups: not counted. So::

        6 * (layers * (12*C*C*L + C*L*(L+1)) + C*V*T) / T

    With ``L = T`` the attention term is ``6 * layers * C * (T + 1)``: PaLM's ``12 * layers
    * C * T`` counts every key for every query, about twice the causal products.
    """
    C, layers, T = work.settings.num_hiddens, work.settings.num_layers, work.num_steps
    L = max(T, work.settings.options.get("context", MAX_LEN)) if work.carries_state else T
    blocks = layers * (12 * C * C * L + C * L * (L + 1))
    return 6 * (blocks + C * work.vocab_size * T) / T


def num_heads(width: int) -> int:
    """Heads of about ``HEAD_DIM`` channels each: the most heads, at most ``width //
    HEAD_DIM``, that divide ``width`` (one head for narrow models)."""
    for heads in range(max(width // HEAD_DIM, 1), 0, -1):
        if width % heads == 0:
            return heads
    return 1


class LayerNorm(nn.Module):
    """``nn.LayerNorm(width)``: the same parameters (``weight``, ``bias``), initial values
    and math; with ``reproducible`` (the run's ``--reproducible`` mode, which the model
    receives in ``ModelSettings.reproducible``), gradients that do not depend on how many
    threads computed them.

    torch's fused CPU LayerNorm sums its weight and bias gradients in one buffer per
    thread, so its bits depend on the thread count even in oneMKL's strict mode. In that
    mode the normalisation is ``F.layer_norm`` without affine parameters, then one
    ``addcmul`` whose parameter gradients are ordinary sums (a test checks the whole
    model). Otherwise it is the fused kernel, which is faster (benchmarks/README.md).
    """

    def __init__(self, width: int, eps: float = 1e-5, *, reproducible: bool = False) -> None:
        super().__init__()
        self.shape, self.eps = (width,), eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.split = reproducible  # fixed when the model is built; not per step

    def forward(self, x: Tensor) -> Tensor:
        if self.split:
            normed = F.layer_norm(x, self.shape, eps=self.eps)
            return torch.addcmul(self.bias, normed, self.weight)
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``i`` sees positions ``<= i`` only."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = (t.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, h, L, C/h)
                   for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, L, C)))


class Block(nn.Module):
    """A pre-norm Transformer block: causal attention, then a 4x-wide GELU MLP, each added
    to the residual stream."""

    def __init__(self, width: int, heads: int, dropout: float, *, reproducible: bool
                 ) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width, reproducible=reproducible)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln_2 = LayerNorm(width, reproducible=reproducible)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CausalTransformer(nn.Module):
    """Token and position embeddings, ``num_layers`` blocks of width ``num_hiddens``,
    ``dropout`` on embeddings, attention and residual branches; a final LayerNorm and a
    linear layer to the vocabulary. Weights N(0, 0.02^2), biases zero (GPT-2's init).
    ``settings.reproducible`` picks the LayerNorms' thread-invariant form."""

    def __init__(self, vocab_size: int, settings: ModelSettings, device: torch.device,
                 max_len: int | None = None) -> None:
        super().__init__()
        max_len = max_len or settings.options.get("context", MAX_LEN)
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {max_len}")
        width = settings.num_hiddens
        heads = settings.options.get("heads", 0) or num_heads(width)
        if heads < 1 or width % heads:
            raise ValueError(f"heads must divide the width {width} (--set heads=N), got {heads}")
        self.max_len = max_len
        # the longest window (tokens attended) seen in training; 0 before training
        self.register_buffer("trained_context", torch.zeros((), dtype=torch.long))
        self.tok_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(max_len, width)
        self.dropout = nn.Dropout(settings.dropout)
        self.blocks = nn.ModuleList(
            Block(width, heads, settings.dropout, reproducible=settings.reproducible)
            for _ in range(settings.num_layers))
        self.ln_f = LayerNorm(width, reproducible=settings.reproducible)
        self.head = nn.Linear(width, vocab_size)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        self.to(device)

    def begin_state(self, batch_size: int, device: torch.device) -> Tensor:
        """No tokens seen yet: an empty ``(B, 0)`` context."""
        return torch.zeros((batch_size, 0), dtype=torch.long, device=device)

    def window(self) -> int:
        """How many tokens a forward pass may attend over: ``max_len`` in training; in eval
        mode the longest window trained on (``max_len`` for an untrained model)."""
        trained = 0 if self.training else int(self.trained_context)
        return min(trained, self.max_len) if trained else self.max_len

    def forward(self, X: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        B, T = X.shape
        if T > self.max_len:
            raise ValueError(f"{T} steps per minibatch exceed the transformer's "
                             f"{self.max_len} positions; use --steps {self.max_len} or fewer")
        keep = max(self.window() - T, 0)  # context tokens that fit in front of X
        tokens = torch.cat((state[:, max(state.shape[1] - keep, 0):], X), dim=1)  # (B, L)
        L = tokens.shape[1]
        if self.training:
            self.trained_context.clamp_(min=L)  # in place, no host sync
        positions = torch.arange(L, device=tokens.device)
        h = self.dropout(self.tok_emb(tokens) + self.pos_emb(positions))  # (B, L, C)
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h[:, L - T:])  # (B, T, C): only X's positions are predicted
        logits = self.head(h.transpose(0, 1).reshape(T * B, -1))  # time-major (T * B, V)
        return logits, tokens[:, -(self.max_len - 1):]
