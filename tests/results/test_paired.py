"""Paired comparisons on the test split: per-seed paired t-test, block bootstrap over test
positions, the report's section, and pairing two runs."""

from __future__ import annotations

import json
import math
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from harness.metrics import BITS
from harness.results.losses import encode_losses
from harness.results.paired import (TITLE, block_bootstrap, default_block, format_paired_runs,
                                    mean_over_seeds, paired_runs, paired_section, paired_seeds,
                                    paired_table)
from harness.results.schema import Record
from harness.results.store import RunStore


# --- paired t-test over seeds ---------------------------------------------------------------

def test_paired_t_matches_scipy_and_a_hand_computation() -> None:
    a = {0: 2.10, 1: 2.31, 2: 2.05, 3: 2.40, 9: 1.0}
    b = {0: 2.00, 1: 2.29, 2: 1.90, 3: 2.41, 7: 5.0}
    result = paired_seeds(a, b)
    assert result.seeds == (0, 1, 2, 3) and result.n == 4
    diffs = [-0.10, -0.02, -0.15, 0.01]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    assert result.mean == pytest.approx(mean) and result.sd == pytest.approx(sd)
    assert result.t == pytest.approx(mean / (sd / 2))
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.ttest_rel([b[s] for s in range(4)], [a[s] for s in range(4)])
    assert result.t == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_paired_t_is_undefined_below_two_seeds_and_skips_missing_values() -> None:
    one = paired_seeds({0: 2.0, 1: None, 2: math.nan}, {0: 1.5, 1: 1.0, 2: 1.0})
    assert (one.n, one.mean, one.t, one.p_value) == (1, -0.5, None, None)
    assert math.isnan(one.sd)
    none = paired_seeds({0: 1.0}, {1: 1.0})
    assert none.n == 0 and none.p_value is None and math.isnan(none.mean)


# --- block bootstrap over test positions ----------------------------------------------------

def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """A stationary AR(1) series with unit innovations."""
    noise = rng.normal(size=n)
    out = np.empty(n)
    out[0] = noise[0] / math.sqrt(1 - phi ** 2)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


def test_identical_arrays_give_exactly_zero() -> None:
    a = np.random.default_rng(0).gamma(2.0, size=5000)
    interval = block_bootstrap(a, a.copy(), block=100, resamples=300)
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.verdict() == "not distinguishable"


def test_interval_covers_a_known_shift_on_autocorrelated_data() -> None:
    shift = 0.5  # nats per token; the interval is in bits
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a = rng.gamma(2.0, size=8000)
        b = a + shift + 0.1 * ar1(8000, 0.95, rng)
        interval = block_bootstrap(a, b, block=400, resamples=500, seed=seed)
        assert interval.high - interval.low < 0.2  # narrow enough to tell bits from nats
        covered += interval.low <= shift * BITS <= interval.high
    assert covered >= 17  # 95% intervals: 19 of 20 expected


def test_blocks_widen_the_interval_on_strongly_autocorrelated_data() -> None:
    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, size=10000)
    b = a + ar1(10000, 0.95, rng)
    iid = block_bootstrap(a, b, block=1, resamples=500)
    blocks = block_bootstrap(a, b, block=500, resamples=500)
    assert iid.estimate == blocks.estimate
    # The integrated autocorrelation time of AR(1) with phi 0.95 is 39: about sqrt(39) wider.
    assert blocks.high - blocks.low > 3 * (iid.high - iid.low)


def test_resamples_are_circular_blocks_cut_to_the_series_length() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=23), rng.normal(size=23)
    block, resamples = 5, 40
    interval = block_bootstrap(a, b, block=block, resamples=resamples, seed=7)
    d = np.concatenate([b - a, (b - a)[:block - 1]])
    starts = np.random.default_rng(7).integers(0, 23, size=(resamples, 5), dtype=np.int32)
    means = [np.concatenate([d[s:s + block] for s in row])[:23].mean() for row in starts]
    low, high = np.quantile(means, [0.025, 0.975]) * BITS
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert interval.estimate == pytest.approx((b - a).mean() * BITS)


def test_bootstrap_checks_its_input() -> None:
    with pytest.raises(ValueError):
        block_bootstrap(np.zeros(3), np.zeros(1), block=1)  # no broadcasting
    with pytest.raises(ConfigError, match="block"):
        block_bootstrap(np.zeros(3), np.zeros(3), block=0)
    with pytest.raises(ConfigError, match="confidence"):
        block_bootstrap(np.zeros(3), np.zeros(3), block=1, confidence=1.0)
    with pytest.raises(ValueError):
        mean_over_seeds([np.zeros(3), np.zeros(4)])
    assert mean_over_seeds([np.zeros(2), np.array([1.0, 3.0])]).tolist() == [0.5, 1.5]
    assert default_block(17056) == 1000 and default_block(376) == 37 and default_block(5) == 2


# --- a run's table ---------------------------------------------------------------------------

def record(model: str, seed: int, losses: np.ndarray, **extra: object) -> Record:
    return Record(key=f"{model}__random__seed{seed}", model=model, sampler="random", seed=seed,
                  metrics={"test_bpc": float(losses.mean() * BITS)},
                  extra={"test_nll": encode_losses(torch.tensor(losses)), **extra})


def test_the_reference_is_the_best_count_model_and_verdicts_follow_the_interval() -> None:
    rng = np.random.default_rng(5)
    base = rng.gamma(2.0, size=3000)
    records = [r for seed in range(3) for r in (
        record("ngram", seed, base + 0.5, trained_by="counts"),
        record("gru", seed, base + 0.01 * seed),
        record("lstm", seed, base + 0.6 + rng.normal(0, 0.01, 3000)),
        record("same", seed, base + 0.5))]
    table = paired_table(records, resamples=300)
    assert table.attrs["reference"] == "ngram / random"
    rows = table.set_index("model")
    assert rows.loc["gru", "verdict"] == "better" and rows.loc["lstm", "verdict"] == "worse"
    assert rows.loc["same", "verdict"] == "not distinguishable"
    assert rows.loc["gru", "n_paired"] == 3
    assert rows.loc["gru", "mean_diff_bpc"] == pytest.approx((0.01 - 0.5) * BITS, abs=1e-5)
    assert paired_table(records, reference="lstm", resamples=50).attrs["reference"] == \
        "lstm / random"
    with pytest.raises(ConfigError, match="choose one of"):
        paired_table(records, reference="transformer")


def test_without_a_count_model_the_best_group_is_the_reference() -> None:
    rng = np.random.default_rng(6)
    base = rng.gamma(2.0, size=500)
    records = [record("gru", 0, base + 0.1), record("lstm", 0, base)]
    assert paired_table(records, resamples=50).attrs["reference"] == "lstm / random"


# --- a real run ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real run of a task with [splits]: gru and lstm, 16 hidden units, 3 seeds."""
    import harness

    folder = tmp_path_factory.mktemp("paired")
    words = "the time traveller said a quick brown fox jumps over lazy dogs".split()
    rng = random.Random(0)
    (folder / "tiny.txt").write_text("\n".join(
        " ".join(rng.choice(words) for _ in range(10)) for _ in range(70)), encoding="utf-8")
    (folder / "tiny.toml").write_text(
        'name = "tiny-split"\ntokenizer = "char"\n[corpus]\npath = "tiny.txt"\n'
        "[splits]\ntrain = 0.8\nvalid = 0.1\ntest = 0.1\n"
        "[recipe]\nbatch_size = 8\nnum_steps = 16\nnum_hiddens = 16\nlr = 0.01\n",
        encoding="utf-8")
    with warnings.catch_warnings():  # the report's warnings are not this test's business
        warnings.simplefilter("ignore")
        result = harness.run(models=["gru", "lstm"], samplers=["random"], seeds=[0, 1, 2],
                             task=str(folder / "tiny.toml"), output_dir=folder / "runs",
                             quiet=True, budget_tokens=1024, eval_tokens=1024,
                             optimizer="adamw")
    assert result.status == "complete"
    return result.path


def test_the_section_renders_from_a_real_run(held_out_run: Path) -> None:
    records = RunStore.open(held_out_run).records()
    section = paired_section(records)
    assert section.startswith(f"## {TITLE}\n")
    tokens = paired_table(records).attrs["tokens"]
    for text in ("paired t-test", "moving-block bootstrap over test positions",
                 "2,000 resamples", f"blocks of {default_block(tokens)} tokens", "95%",
                 f"{tokens:,} scored test tokens"):
        assert text in section
    row = [line for line in section.splitlines() if line.startswith("| ")][-1]
    assert row.count("|") == 7 and "random" in row and " 3 " in row
    # Both paths agree: the mean per-seed test_bpc difference is the mean token difference.
    table = paired_table(records)
    assert table["mean_diff_bpc"].item() == pytest.approx(table["mean_diff"].item(), abs=1e-5)
    stripped = [r.with_changes(extra={k: v for k, v in r.extra.items() if k != "test_nll"})
                for r in records]
    assert paired_section(stripped) == ""


def test_two_runs_pair_group_by_group(held_out_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(held_out_run, copy)
    comparison = paired_runs(held_out_run, copy, resamples=100)
    assert sorted(comparison.table["model"]) == ["gru", "lstm"]
    assert (comparison.table[["ci_low", "ci_high", "mean_diff_bpc"]] == 0).all().all()
    assert (comparison.table["n_paired"] == 3).all()
    text = format_paired_runs(comparison)
    assert text.startswith(f"## {TITLE}\n") and "(baseline)" in text
    assert json.loads(format_paired_runs(comparison, "json"))["rows"][0]["n_paired"] == 3
    # B's gru gets lstm's losses: its row is lstm - gru, as within run A, and B - A.
    lines = [json.loads(line) for line in (copy / "records.jsonl").read_text().splitlines()]
    lstm = {r["seed"]: r for r in lines if r["model"] == "lstm"}
    for line in lines:
        if line["model"] == "gru":
            line.update({k: lstm[line["seed"]][k] for k in ("test_nll", "test_bpc")})
    (copy / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    swapped = paired_runs(held_out_run, copy, resamples=100).table.set_index("model")
    within = paired_table(RunStore.open(held_out_run).records(), reference="gru",
                          resamples=100).set_index("model")
    for column in ("mean_diff_bpc", "mean_diff", "ci_low", "ci_high", "p_value"):
        assert swapped.loc["gru", column] == pytest.approx(within.loc["lstm", column])
    assert swapped.loc["lstm", "mean_diff_bpc"] == 0


@pytest.mark.parametrize("change,named", [
    (lambda s: s["corpus"].update(bounds=[s["corpus"]["bounds"][0] + 1,
                                          *s["corpus"]["bounds"][1:]]), "split bounds"),
    (lambda s: s["recipe"].update(batch_size=4), "batch_size"),
    (lambda s: s["corpus"].update(sha1="0" * 40), "corpus sha1"),
    (lambda s: s.update(task="other"), "task"),
])
def test_runs_on_other_test_characters_are_refused(held_out_run: Path, tmp_path: Path,
                                                   change, named: str) -> None:
    other = tmp_path / "other"
    shutil.copytree(held_out_run, other)
    manifest = json.loads((other / "manifest.json").read_text())
    change(manifest["settings"])
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=named) as error:
        paired_runs(held_out_run, other)
    assert "\n" not in str(error.value)
