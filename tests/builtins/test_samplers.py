import random

import pytest
import torch

from harness_builtins.samplers import SAMPLERS, seq_data_iter_random, seq_data_iter_sequential

CORPUS = list(range(1000))


def batches(fn, seed=0, batch_size=4, num_steps=7):
    return list(fn(CORPUS, batch_size, num_steps, random.Random(seed)))


@pytest.mark.parametrize("fn", [seq_data_iter_sequential, seq_data_iter_random])
def test_shapes_and_targets_are_inputs_shifted_by_one(fn) -> None:
    out = batches(fn)
    assert out
    for X, Y in out:
        assert X.shape == Y.shape == (4, 7)
        assert torch.equal(Y, X + 1)  # the corpus is 0..999, so the next token is +1


def test_sequential_rows_continue_across_minibatches() -> None:
    out = batches(seq_data_iter_sequential)
    for (X0, _), (X1, _) in zip(out, out[1:]):
        assert torch.equal(X1[:, 0], X0[:, -1] + 1)


def test_sequential_offset_is_random_and_within_num_steps() -> None:
    firsts = {batches(seq_data_iter_sequential, seed)[0][0][0, 0].item() for seed in range(40)}
    assert len(firsts) > 1 and firsts <= set(range(0, 8))


def test_sequential_covers_the_corpus_without_repeats() -> None:
    out = batches(seq_data_iter_sequential)
    seen = torch.cat([X.reshape(-1) for X, _ in out]).tolist()
    assert len(seen) == len(set(seen))
    # at most one (num_steps + 1) tail per row and the offset are left out
    assert len(seen) >= len(CORPUS) - 4 * 8 - 8


def test_random_subsequences_do_not_overlap_and_are_shuffled() -> None:
    out = batches(seq_data_iter_random)
    starts = [X[b, 0].item() for X, _ in out for b in range(X.shape[0])]
    assert len(starts) == len(set(starts))
    offset = starts[0] % 7
    assert all(s % 7 == offset for s in starts)
    assert starts != sorted(starts)
    assert len(starts) == ((len(CORPUS) - offset - 1) // 7) // 4 * 4


def test_same_rng_seed_gives_same_batches() -> None:
    a, b = batches(seq_data_iter_random, 3), batches(seq_data_iter_random, 3)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))


def test_state_rules() -> None:
    rules = {spec.name: spec.carries_state for spec in SAMPLERS}
    assert rules == {"sequential": True, "random": False, "sequential-reset": False}
    by_name = {spec.name: spec for spec in SAMPLERS}
    assert by_name["sequential-reset"].batches is seq_data_iter_sequential


@pytest.mark.parametrize("name", ["seq_data_iter_random", "seq_data_iter_sequential"])
def test_batches_are_exactly_d2ls_for_the_same_seed(name: str) -> None:
    import d2l_seed  # the seed's own iterators (benchmarks/), drawing from the global random

    ours = {"seq_data_iter_random": seq_data_iter_random,
            "seq_data_iter_sequential": seq_data_iter_sequential}[name]
    for seed in range(3):
        random.seed(seed)
        theirs = list(getattr(d2l_seed, name)(CORPUS, 4, 7))
        mine = list(ours(torch.tensor(CORPUS), 4, 7, random.Random(seed)))
        assert len(mine) == len(theirs)
        assert all(torch.equal(a, c) and torch.equal(b, d)
                   for (a, b), (c, d) in zip(mine, theirs))
