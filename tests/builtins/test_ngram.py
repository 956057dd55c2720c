"""The n-gram baseline (``ngram``): interpolated Kneser-Ney probabilities against values
worked by hand and a slow dictionary-counting reference, its state, and its registration."""

import random
from collections import Counter, defaultdict

import pytest
import torch
from torch.nn import functional as F

from harness import load_registry
from harness.errors import ConfigError
from harness.plan.dryrun import check_model
from harness.plugin.contracts import CountModel, ModelOption, ModelSettings
from harness_builtins.ngram import PAD, build_ngram

CPU = torch.device("cpu")
D = 0.75


def model(order: int, vocab_size: int, tokens: list[int] | None = None) -> torch.nn.Module:
    built = build_ngram(vocab_size, ModelSettings(16, options={"order": order}), CPU)
    if tokens is not None:
        built.fit(torch.tensor(tokens, dtype=torch.long))
    return built


def probs(m: torch.nn.Module, X: torch.Tensor, state=None) -> torch.Tensor:
    """Probabilities ``(steps * batch, vocab)`` of ``X`` from a fresh state (or ``state``)."""
    logp, _ = m(X, m.begin_state(X.shape[0], CPU) if state is None else state)
    return logp.double().exp()


def reference(tokens: list[int], vocab_size: int, order: int):
    """``P(w, context)`` by the textbook recursion over dictionaries of counts: raw counts
    at ``order``, continuation counts (distinct preceding tokens, the start counting as
    one) below it, discount D, down to the uniform distribution."""
    counts = {order: Counter(tuple(tokens[i:i + order])
                             for i in range(len(tokens) - order + 1))}
    for k in range(1, order):
        before = defaultdict(set)
        for i in range(len(tokens) - k + 1):
            before[tuple(tokens[i:i + k])].add(tokens[i - 1] if i else "start")
        counts[k] = {gram: len(seen) for gram, seen in before.items()}

    def p(w: int, h: tuple[int, ...]) -> float:
        k = len(h) + 1
        lower = p(w, h[1:]) if h else 1 / vocab_size
        following = {g: c for g, c in counts[k].items() if g[:-1] == h}
        total = sum(following.values())
        if total == 0:
            return lower
        return (max(following.get(h + (w,), 0) - D, 0) / total
                + D * len(following) / total * lower)

    return lambda w, context: p(w, tuple(context[-(order - 1):]) if order > 1 else ())


def test_order_1_is_the_discounted_unigram_interpolated_with_uniform() -> None:
    # raw counts 3 and 1 of 4 tokens, 2 types, V = 5: (c - 0.75) / 4 + 0.75 * 2 / 4 / 5
    P = probs(model(1, 5, [1, 1, 1, 2]), torch.tensor([[0, 3]]))
    expected = torch.tensor([0.075, 0.6375, 0.1375, 0.075, 0.075], dtype=torch.float64)
    assert torch.allclose(P, expected.expand(2, 5), atol=1e-6)


def test_order_2_matches_values_worked_by_hand() -> None:
    # continuation counts of 1, 2, 3: {start, 1, 2}, {1}, {1}, so P1 = .09 .54 .14 .14 .09;
    # after 1 (followed by 1, 2, 3 once each): 0.25 / 3 + 0.75 * P1; after 2 (by 1 once):
    # 0.25 + 0.75 * P1(1) for 1; after 3 (only at the end) and 4 (never): P1
    P = probs(model(2, 5, [1, 1, 2, 1, 3]), torch.tensor([[1, 2, 3, 4]]))
    P1 = [0.09, 0.54, 0.14, 0.14, 0.09]
    expected = torch.tensor([[0.25 / 3 * (w in (1, 2, 3)) + D * P1[w] for w in range(5)],
                             [0.25 * (w == 1) + D * P1[w] for w in range(5)], P1, P1],
                            dtype=torch.float64)
    assert torch.allclose(P, expected, atol=1e-6)


def test_order_3_matches_a_slow_reference_at_every_context() -> None:
    # 6 never occurs; 0 does, so padding taken for token 0 would find contexts (0, b)
    corpus = [1, 2, 3, 1, 4, 0, 1, 5, 1, 2, 3, 1, 2, 1, 1, 3, 2, 5, 0, 1, 5, 5, 1]
    V = 7
    ref = reference(corpus, V, 3)
    # every pair (a, b): after a the context is (a) (sequence start), after b it is (a, b)
    X = torch.tensor([[a, b] for a in range(V) for b in range(V)])
    P = probs(model(3, V, corpus), X).reshape(2, V * V, V)  # time-major: (t, row, vocab)
    expected = torch.tensor([[[ref(w, list(X[r, :t + 1].tolist())) for w in range(V)]
                              for r in range(V * V)] for t in range(2)], dtype=torch.float64)
    assert torch.allclose(P, expected, atol=1e-6)
    assert len({tuple(row) for row in expected[1].tolist()}) > V  # contexts differ


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_row_is_a_distribution_with_no_zero(order: int) -> None:
    gen = torch.Generator().manual_seed(order)
    m = model(order, 11, torch.randint(1, 8, (300,), generator=gen).tolist())  # 0, 8-10 unseen
    X = torch.randint(0, 11, (6, 9), generator=gen)
    for state in (None, torch.randint(0, 11, (6, order - 1), generator=gen)):
        P = probs(m, X, state)
        assert P.shape == (9 * 6, 11)
        assert (P > 0).all()
        assert torch.allclose(P.sum(dim=1), torch.ones(9 * 6, dtype=torch.float64), atol=1e-6)


def test_an_unfitted_model_is_uniform_and_a_refit_replaces_the_counts() -> None:
    X = torch.tensor([[1, 2, 3]])
    assert torch.allclose(probs(model(3, 4), X), torch.full((3, 4), 0.25, dtype=torch.float64))
    refit = model(3, 4, [1, 1, 1, 1, 1, 2])
    refit.fit(torch.tensor([3, 2, 1, 3, 2, 1]))
    assert torch.allclose(probs(refit, X), probs(model(3, 4, [3, 2, 1, 3, 2, 1]), X))


def test_a_carried_state_continues_the_sequence_across_minibatches() -> None:
    gen = torch.Generator().manual_seed(0)
    m = model(4, 9, torch.randint(0, 9, (400,), generator=gen).tolist())
    X = torch.randint(0, 9, (3, 13), generator=gen)
    whole, last = m(X, m.begin_state(3, CPU))
    state, parts = m.begin_state(3, CPU), []
    for chunk in (X[:, :5], X[:, 5:6], X[:, 6:]):
        logp, state = m(chunk, state)
        parts.append(logp)
    assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(state, last) and torch.equal(state, X[:, -3:])
    fresh, _ = m(X[:, 5:], m.begin_state(3, CPU))  # a fresh state forgets the context
    assert not torch.allclose(fresh, whole[5 * 3:])


def test_a_fresh_state_is_all_padding() -> None:
    state = model(5, 6).begin_state(4, CPU)
    assert state.dtype == torch.long and state.shape == (4, 4) and (state == PAD).all()


def test_a_higher_order_gives_a_lower_held_out_cross_entropy_on_repetitive_text() -> None:
    rng = random.Random(0)
    words = ["the cat sat ", "on the mat ", "a dog ran ", "to the hat "]
    text = "".join(rng.choice(words) for _ in range(400))
    ids = [" acdefghmnorst".index(ch) for ch in text]
    cut = int(0.8 * len(ids))
    held = torch.tensor(ids[cut:])
    losses = []
    for order in (1, 2, 3, 4, 6):
        logp, _ = model(order, 14, ids[:cut])(held[:-1].unsqueeze(0),
                                              torch.full((1, order - 1), PAD))
        losses.append(F.cross_entropy(logp, held[1:]).item())
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)


def test_fit_refuses_ids_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="token ids"):
        model(2, 5, [1, 2, 5])


REGISTRY = load_registry(autoload=False)


def test_the_harness_finds_it_as_a_count_model_with_an_order_option() -> None:
    spec = REGISTRY.model("ngram")
    assert spec.trained_by == "counts"
    assert [(o.name, o.type, o.default) for o in spec.options] == [("order", int, 5)]
    built = spec.factory(28, ModelSettings(16), CPU)
    assert isinstance(built, CountModel) and built.order == 5
    assert not list(built.parameters())


@pytest.mark.parametrize("order", [0, 11, 2.0, True])
def test_an_order_outside_1_to_10_is_refused_in_one_line(order) -> None:
    with pytest.raises(ValueError, match="order must be an integer from 1 to 10") as error:
        build_ngram(28, ModelSettings(16, options={"order": order}), CPU)
    assert "\n" not in str(error.value)


def test_an_order_whose_n_grams_overflow_int64_is_refused() -> None:
    build_ngram(4580, ModelSettings(16, options={"order": 5}), CPU)  # 4580 ** 5 < 2 ** 63
    with pytest.raises(ValueError, match="too high for a vocabulary of 4580"):
        build_ngram(4580, ModelSettings(16, options={"order": 6}), CPU)


def test_the_dry_run_on_the_meta_device_passes_and_refuses_a_bad_order() -> None:
    spec = REGISTRY.model("ngram")
    meta = torch.device("meta")
    built = spec.factory(28, ModelSettings(16, options={"order": 7}), meta)
    logp, state = built(torch.zeros((32, 35), dtype=torch.long, device=meta),
                        built.begin_state(32, meta))
    assert logp.device == meta and logp.shape == (35 * 32, 28) and state.shape == (32, 6)
    check_model(spec, vocab_size=28, settings=ModelSettings(16), batch_size=32, num_steps=35)
    with pytest.raises(ConfigError, match="model 'ngram': order must be"):
        check_model(spec, vocab_size=28, settings=ModelSettings(16, options={"order": 11}),
                    batch_size=32, num_steps=35)
