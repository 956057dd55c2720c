"""A count-model baseline: an n-gram model with interpolated Kneser-Ney smoothing (``ngram``).

Plain interpolated Kneser-Ney (Chen & Goodman 1998, without the three discounts of the
modified form), one absolute discount ``D = 0.75`` at every order, interpolated down to
the uniform distribution over the vocabulary, so every probability is > 0 and every row
sums to 1. For a context ``h`` of ``k - 1`` tokens and ``h'`` the same without its first::

    P_k(w | h) = max(c_k(h w) - D, 0) / S_k(h) + D * N_k(h) / S_k(h) * P_{k-1}(w | h')
    P_0(w)     = 1 / V

``c_k`` is the raw count at the model's order ``n`` and the continuation count below it
(how many distinct tokens precede ``h w`` in the training text; the start of the text counts
as one more such token, the padding id, so a k-gram seen only there still counts once).
``S_k(h)`` is ``sum_w c_k(h w)`` and ``N_k(h)`` the number of ``w`` with ``c_k(h w) > 0``.
A context never seen (``S_k(h) = 0``) gives ``P_k(. | h) = P_{k-1}(. | h')``.

The state is the last ``n - 1`` token ids of each row (``(batch, n - 1)``, int64), padded
on the left with :data:`PAD` ("before the start"): a fresh state starts a sequence, whose
first positions have fewer than ``n - 1`` tokens of context and use the distribution of
the highest order their context fills (``P_{L+1}`` after ``L`` tokens, a lower order with
continuation counts); a carried state continues the text across minibatches.

Contexts and k-grams are integers in base ``V`` (so the factory refuses ``V ** order`` past
int64), counted with ``torch.unique``; a minibatch is scored order by order with
``searchsorted`` over the sorted contexts and one scatter of each found context's entries.
``forward`` returns ``log P`` as float32, normalised as a ``log_softmax`` is (each row sums
to 1 in float64 before the log), so ``F.cross_entropy`` on it is the negative
log-likelihood. The tables are non-persistent buffers: they follow ``.to(device)``, are
left out of ``state_dict`` (a fitted model is refitted, not loaded), and the model has no
parameters. ``num_hiddens``, ``num_layers`` and ``dropout`` mean nothing to it: ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness import hookimpl
from harness.plugin.contracts import ModelOption, ModelSettings, ModelSpec

DISCOUNT = 0.75
"""The absolute discount of every order (plain interpolated Kneser-Ney)."""
PAD = -1
"""The state's token id for "before the start of the sequence"."""
DEFAULT_ORDER, MAX_ORDER = 5, 10
_TABLE = ("ctx", "start", "length", "words", "alpha", "gamma")


class KneserNey(nn.Module):
    """An interpolated Kneser-Ney n-gram model of order ``order`` over ``vocab_size``
    tokens (see the module docstring); uniform until :meth:`fit` counts a text."""

    def __init__(self, vocab_size: int, order: int, device: torch.device) -> None:
        super().__init__()
        self.vocab_size, self.order = vocab_size, order
        self.register_buffer("anchor", torch.zeros(0, device=device), persistent=False)
        if device.type != "meta":
            self._store([_empty_table(device) for _ in range(order)])

    def _store(self, tables: list[dict[str, Tensor]]) -> None:
        for k, table in enumerate(tables, start=1):
            for name in _TABLE:
                self.register_buffer(f"o{k}_{name}", table[name], persistent=False)

    def _table(self, k: int) -> dict[str, Tensor]:
        return {name: getattr(self, f"o{k}_{name}") for name in _TABLE}

    def fit(self, tokens: Tensor) -> None:
        """Count ``tokens`` (a 1-D int64 tensor of ids), replacing any earlier counts."""
        t = torch.as_tensor(tokens).reshape(-1).to("cpu", torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        V, n, N = self.vocab_size, self.order, t.numel()
        codes = [t]  # codes[k - 1][i]: the k-gram t[i:i+k] in base V
        for k in range(2, n + 1):
            codes.append(codes[-1][:-1] * V + t[k - 1:] if N >= k else t[:0])
        tables = []
        for k in range(1, n + 1):
            if k == n:  # raw counts at the model's order
                grams, counts = torch.unique(codes[k - 1], return_counts=True)
            else:  # continuation counts: distinct (preceding token, k-gram) pairs
                pairs = torch.unique(codes[k]) % V ** k
                grams, counts = torch.unique(torch.cat([pairs, codes[k - 1][:1]]),
                                             return_counts=True)
            tables.append(_table(grams, counts.to(torch.float64), V, self.anchor.device))
        self._store(tables)

    def begin_state(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.full((batch_size, self.order - 1), PAD, dtype=torch.long, device=device)

    def forward(self, X: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Log-probabilities ``(steps * batch, vocab)``, time-major, and the last
        ``order - 1`` tokens of each row as the new state."""
        B, T = X.shape
        V, n = self.vocab_size, self.order
        if state is None:
            state = self.begin_state(B, X.device)
        Z = torch.cat([state.to(X.device, torch.long), X.long()], dim=1)  # (B, n - 1 + T)
        if X.device.type == "meta":
            return torch.empty((T * B, V), device=X.device), Z[:, T:]
        Zt = Z.T  # (n - 1 + T, B): row n - 1 + t holds X[:, t]
        P = torch.full((T * B, V), 1.0 / V, dtype=torch.float64, device=X.device)
        code = torch.zeros(T * B, dtype=torch.long, device=X.device)
        filled = torch.ones(T * B, dtype=torch.bool, device=X.device)
        for k in range(1, n + 1):
            L = k - 1  # context length; its first token is L - 1 places before X[:, t]
            if L:
                first = Zt[n - L: n - L + T].reshape(-1)
                filled &= first != PAD
                code = code + first.clamp(min=0) * V ** (L - 1)
            self._interpolate(P, self._table(k), code, filled)
        # P sums to 1 by construction (float64), so its log needs no log_softmax
        return P.log().to(torch.float32), Z[:, T:]

    @staticmethod
    def _interpolate(P: Tensor, table: dict[str, Tensor], code: Tensor, filled: Tensor
                     ) -> None:
        """``P = alpha(h) + gamma(h) * P`` in place for the rows whose context ``code``
        the table holds; the other rows keep the lower order's distribution."""
        ctx = table["ctx"]
        if not ctx.numel():
            return
        idx = torch.searchsorted(ctx, code).clamp(max=ctx.numel() - 1)
        rows = (filled & (ctx[idx] == code)).nonzero().squeeze(1)
        which = idx[rows]
        P[rows] *= table["gamma"][which].unsqueeze(1)
        lengths = table["length"][which]
        ends = lengths.cumsum(0)
        entry = (torch.arange(int(ends[-1]) if ends.numel() else 0, device=P.device)
                 - (ends - lengths).repeat_interleave(lengths)
                 + table["start"][which].repeat_interleave(lengths))
        P.index_put_((rows.repeat_interleave(lengths), table["words"][entry]),
                     table["alpha"][entry], accumulate=True)


def _table(grams: Tensor, counts: Tensor, V: int, device: torch.device) -> dict[str, Tensor]:
    """One order's table from its sorted k-gram codes and their counts: the sorted context
    codes, each context's run of entries (start, length), and per entry the next token and
    its discounted share ``alpha``; per context the lower order's weight ``gamma``."""
    context, words = grams // V, grams % V
    ctx, length = torch.unique_consecutive(context, return_counts=True)
    which = torch.repeat_interleave(torch.arange(ctx.numel()), length)
    total = torch.zeros(ctx.numel(), dtype=torch.float64).index_add_(0, which, counts)
    table = {"ctx": ctx, "start": length.cumsum(0) - length, "length": length,
             "words": words, "alpha": (counts - DISCOUNT).clamp(min=0) / total[which],
             "gamma": DISCOUNT * length.to(torch.float64) / total}
    return {name: value.to(device) for name, value in table.items()}


def _empty_table(device: torch.device) -> dict[str, Tensor]:
    empty = torch.zeros(0, dtype=torch.long)
    return _table(empty, empty.to(torch.float64), 1, device)


def build_ngram(vocab_size: int, settings: ModelSettings, device: torch.device) -> nn.Module:
    """The model of order ``settings.options["order"]`` (1 to 10; default 5)."""
    order = settings.options.get("order", DEFAULT_ORDER)
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an integer from 1 to {MAX_ORDER}, not {order!r}")
    if vocab_size ** order >= 2 ** 63:
        raise ValueError(f"order {order} is too high for a vocabulary of {vocab_size} "
                         "tokens (its n-grams would not fit in int64)")
    return KneserNey(vocab_size, order, device)


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(ModelSpec(
        "ngram", build_ngram,
        "n-gram count model, interpolated Kneser-Ney (D=0.75), fitted once on the train split",
        options=(ModelOption("order", int, DEFAULT_ORDER,
                             f"n-gram order: tokens of context + 1 (1 to {MAX_ORDER})"),),
        trained_by="counts",
        # it multiplies no matrices (it sorts, counts and gathers): no FLOPs to declare, so
        # the report leaves its FLOP/s and % of peak blank rather than showing a 0
        flops_per_token=None))
