import math
import statistics

import pandas as pd
import pytest

from harness.results.stats import aggregate, group_columns, summarize, welch_test


def test_summary_is_mean_and_sample_std_of_finite_values() -> None:
    summary = summarize([1.0, 2.0, None, 3.0, math.nan, 4.0, math.inf])
    assert summary.n == 4
    assert summary.mean == 2.5
    assert summary.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, divisor n - 1


def test_one_value_has_no_spread_and_none_has_no_mean() -> None:
    one = summarize([7.0])
    assert (one.mean, one.n) == (7.0, 1) and math.isnan(one.std)
    empty = summarize([None, math.nan])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.std)


def test_welch_test_matches_the_textbook_formula() -> None:
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.5]
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 3  # s^2 / n of each side
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    result = welch_test(a, b)
    assert result.statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(0.029145, abs=1e-6)  # t = -3.4125 on 3.806 df
    assert result.significant(0.05) and not result.significant(0.01)
    assert not result.reason


def test_welch_test_needs_three_seeds_and_some_variance() -> None:
    few = welch_test([1.0, 2.0], [3.0, 4.0, 5.0])
    assert math.isnan(few.p_value) and few.reason == "fewer than 3 seeds"
    assert not few.significant()
    flat = welch_test([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert math.isnan(flat.p_value) and flat.reason == "no variance"
    assert welch_test([1.0, 2.0], [3.0, 4.0], min_seeds=2).reason == ""


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "sampler", "seed", "status", "train_ppl",
                                       "valid_ppl", "tokens_per_sec"])


def test_aggregate_averages_ok_seeds_and_lists_the_others() -> None:
    summary = aggregate(frame([
        ("m", "s", 0, "ok", 2.0, 3.0, 100.0),
        ("m", "s", 1, "ok", 4.0, 5.0, 300.0),
        ("m", "s", 2, "diverged", None, None, None),
        ("m", "s", 3, "failed", None, None, None),
        ("m", "s", 4, "diverged", 1e9, None, 1e9),  # never averaged in, whatever it holds
        ("m", "t", 0, "failed", None, None, None),
    ]))
    first, second = summary.to_dict(orient="records")
    assert (first["n"], first["n_ok"]) == (5, 2)
    assert first["train_ppl_mean"] == 3.0 and first["train_ppl_std"] == pytest.approx(math.sqrt(2))
    assert first["tokens_per_sec_mean"] == 200.0
    assert first["not_ok"] == "diverged: 2, 4; failed: 3"
    assert (second["sampler"], second["n"], second["n_ok"]) == ("t", 1, 0)
    assert math.isnan(second["train_ppl_mean"]) and second["not_ok"] == "failed: 0"


def test_per_record_settings_split_groups() -> None:
    rows = frame([("m", "s", 0, "ok", 2.0, 3.0, 1.0), ("m", "s", 0, "ok", 4.0, 5.0, 1.0)])
    rows["setting.lr"] = [0.5, 1.0]
    assert group_columns(rows) == ["model", "sampler", "setting.lr"]
    summary = aggregate(rows)
    assert summary["setting.lr"].tolist() == [0.5, 1.0]
    assert summary["train_ppl_mean"].tolist() == [2.0, 4.0]
