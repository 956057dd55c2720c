"""Efficiency and noisy throughput in the results: the rules of
harness.results.efficiency, and the columns, marks and footnotes the reports and the
CSV/JSON tables show, for new run directories and for older ones without a peak."""

import csv
import io
import json
import math
from pathlib import Path

import pytest

from harness import format_summary, load_run, summarize_runs
from harness.results.efficiency import (LOAD_LIMIT, SPREAD_LIMIT, interval_rates,
                                        is_unreliable, matching_peak, throughput_spread,
                                        unreliable_reasons)
from harness.results.report import render_report
from harness.results.schema import Manifest, Record
from harness.results.store import RunStore

from test_report import heldout_run, section

PEAK = {"device": "cpu", "name": "Test CPU", "precision": "fp32", "threads": 2,
        "flops_per_sec": 1e10, "kind": "measured", "method": "best of 5 samples",
        "source": "", "host": "h", "load": 0.5}


def test_the_spread_is_the_90th_over_the_10th_percentile_after_the_first_interval() -> None:
    assert throughput_spread([1.0, 100.0, 100.0, 100.0]) == 1.0  # the warm-up is left out
    assert throughput_spread([1.0, 100.0, 200.0]) == pytest.approx(190 / 110)
    assert throughput_spread([5.0, 100.0]) is None  # one interval: no spread
    assert throughput_spread([5.0, 100.0, None, math.nan, 0.0]) is None
    # lent cores change the speed legitimately: spreads are taken per thread count
    rates, threads = [9.0, 100.0, 100.0, 200.0, 200.0], [1, 1, 1, 2, 2]
    assert throughput_spread(rates, threads) == 1.0
    assert throughput_spread(rates) == 2.0


def test_held_out_intervals_are_the_spans_between_validations() -> None:
    curve = [{"tokens": 1000, "seconds": 2.0, "threads": 2},
             {"tokens": 3000, "seconds": 3.0, "threads": 2},
             {"tokens": 3000, "seconds": 3.0, "threads": 4},  # nothing trained in between
             {"tokens": 6000, "seconds": 6.0, "threads": 4}]
    assert interval_rates(curve) == ([500.0, 2000.0, None, 1000.0], [2, 2, 4, 4])


def test_tokens_per_sec_is_unreliable_past_either_limit() -> None:
    assert is_unreliable(None, None, None) is None  # nothing recorded to tell
    assert is_unreliable(None, 1.0, None) is None
    assert is_unreliable(1.2, 1.0, 2) is False
    assert is_unreliable(SPREAD_LIMIT, None, None) is False  # the limits themselves pass
    assert is_unreliable(None, LOAD_LIMIT * 2, 2) is False
    assert is_unreliable(SPREAD_LIMIT + 0.01, None, None) is True
    assert is_unreliable(None, LOAD_LIMIT * 2 + 0.01, 2) is True
    assert unreliable_reasons(3.0, 5.0, 2) == [
        f"its interval throughputs spread 3.00x (90th over 10th percentile; limit "
        f"{SPREAD_LIMIT:g}x)",
        f"the 1-minute load average reached 5.00 on 2 cores (limit {LOAD_LIMIT:g} per core)"]


def test_a_record_s_peak_matches_precision_and_threads_a_gpu_s_published_first() -> None:
    bf16 = {**PEAK, "precision": "bf16", "flops_per_sec": 5e10}
    peaks = [PEAK, {**PEAK, "threads": 1, "flops_per_sec": 6e9}, bf16]
    assert matching_peak(peaks, precision="fp32", threads=1)["flops_per_sec"] == 6e9
    assert matching_peak(peaks, precision="bf16", threads=2) is bf16
    assert matching_peak(peaks, precision="fp32", threads=8) is None
    gpu = [{**PEAK, "threads": None, "kind": "measured"},
           {**PEAK, "threads": None, "kind": "published", "flops_per_sec": 6.7e13}]
    assert matching_peak(gpu, precision="fp32", threads=16)["kind"] == "published"
    assert matching_peak(gpu[:1], precision="fp32", threads=16) is gpu[0]


def make_run(tmp_path: Path, *, peak: bool = True, measured: bool = True,
             peak_rate: float = PEAK["flops_per_sec"]) -> RunStore:
    """A d2l-task run: scratch (2 seeds on 2 threads, one on a noisy machine), nnrnn on
    4 threads (no peak measured for it), gru in bf16 (its --set point); ``peak``: the
    manifest has peaks (older ones do not); ``measured``: the records have FLOPs/token and
    the throughput's spread and load (older ones do not)."""
    manifest = {"status": "complete",
                "settings": {"task": "t", "models": ["scratch", "nnrnn", "gru"],
                             "samplers": ["random"], "seeds": [0, 1],
                             "recipe": {"precision": "fp32"}, "corpus": {"sha1": "abc"}}}
    if peak:
        manifest["peak"] = [{**PEAK, "flops_per_sec": peak_rate},
                            {**PEAK, "precision": "bf16", "flops_per_sec": 4e10}]
    store = RunStore.create(tmp_path, Manifest.from_json(manifest))

    def record(model: str, seed: int, threads: int, rate: float, spread: float, load: float,
               **settings: object) -> Record:
        extra = {"flops_per_token": 5e5, "throughput_spread": spread, "max_load": load,
                 "cpu_count": 2} if measured else {}
        return Record.from_json({
            "key": f"{model}__random__seed{seed}", "model": model, "sampler": "random",
            "seed": seed, "status": "ok", "train_ppl": 5.0, "valid_ppl": 6.0,
            "tokens_per_sec": rate, "torch_threads": threads, "settings": settings, **extra})

    store.append_record(record("scratch", 0, 2, 1000.0, 1.1, 1.5))
    store.append_record(record("scratch", 1, 2, 3000.0, 2.0, 1.5))  # spread 2x: noisy
    store.append_record(record("nnrnn", 0, 4, 2000.0, 1.1, 2.6))  # load 2.6 on 2 cores
    store.append_record(record("gru", 0, 2, 400.0, 1.0, 1.0, precision="bf16"))
    return store


def summary_row(text: str, model: str) -> list[str]:
    line = next(line for line in section(text, "## Results").splitlines()
                if line.startswith(f"| {model} "))
    return [cell.strip() for cell in line.split("|")[1:-1]]


def header(text: str) -> list[str]:
    return [cell.strip() for cell in section(text, "## Results").split("\n\n")[1]
            .splitlines()[0].split("|")[1:-1]]


def test_the_report_shows_flops_and_percent_of_the_matching_peak(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    columns = header(text)
    assert columns[columns.index("tokens_per_sec") + 1:][:3] == ["FLOPs/token", "FLOP/s",
                                                                 "% of peak"]
    cells = dict(zip(columns, summary_row(text, "scratch")))
    # 5e5 FLOPs/token x mean(1000, 3000) tokens/s = 1e9 FLOP/s, of a 1e10 peak (fp32, 2)
    assert cells["FLOPs/token"] == "500000" and cells["FLOP/s"] == "1 G †"
    assert cells["% of peak"] == "10.0 ± 7.1 †"  # 5 % and 15 %: sample std 7.07; noisy
    gru = dict(zip(columns, summary_row(text, "gru")))
    assert gru["FLOP/s"] == "200 M" and gru["% of peak"] == "0.500"  # of the bf16 peak
    nnrnn = dict(zip(columns, summary_row(text, "nnrnn")))
    assert nnrnn["FLOP/s"] == "1 G †" and nnrnn["% of peak"] == ""  # none on 4 threads
    results = section(text, "## Results")
    assert "| Test CPU " in results and "| 10 G " in results and "best of 5 samples" in results
    assert "| load then " in results and "| 0.50 " in results


def test_noisy_throughput_is_marked_with_a_footnote_saying_why(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    columns = header(text)
    rows = {m: dict(zip(columns, summary_row(text, m))) for m in ("scratch", "nnrnn", "gru")}
    assert rows["scratch"]["tokens_per_sec"] == "2000 ± 1414 †"
    assert rows["nnrnn"]["tokens_per_sec"] == "2000 †"
    assert rows["gru"]["tokens_per_sec"] == "400"
    results = section(text, "## Results")
    assert ("† scratch / random: tokens/sec (so its FLOP/s and % of peak) unreliable: its interval throughputs spread "
            "2.00x") in results
    assert ("† nnrnn / random: tokens/sec (so its FLOP/s and % of peak) unreliable: the 1-minute load average reached "
            "2.60 on 2 cores") in results
    assert "† gru" not in results
    per_seed = results.split("### Per seed")[1]
    assert "| 3000 † " in per_seed and "| 1000 " in per_seed and "| FLOP/s " in per_seed
    # the seed's FLOP/s and % of peak come from its tokens/sec, and carry its mark
    assert "| 1.5 G † " in per_seed and "| 15 † " in per_seed and "| 500 M " in per_seed


def test_csv_and_json_have_the_efficiency_as_numbers_and_a_boolean(tmp_path: Path) -> None:
    path = make_run(tmp_path).path
    summary = summarize_runs(load_run(path).drop(columns="run_id"))
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(format_summary(summary, "csv")))}
    assert float(rows["scratch"]["flops_per_sec_mean"]) == 1e9
    assert float(rows["scratch"]["percent_of_peak_mean"]) == pytest.approx(10.0)
    assert rows["nnrnn"]["percent_of_peak_mean"] == ""
    assert [rows[m]["tokens_per_sec_unreliable"] for m in ("scratch", "nnrnn", "gru")] == [
        "True", "True", "False"]
    assert float(rows["scratch"]["throughput_spread"]) == 2.0
    data = {r["model"]: r for r in json.loads(format_summary(summary, "json"))}
    assert data["gru"]["tokens_per_sec_unreliable"] is False
    assert data["gru"]["percent_of_peak_mean"] == pytest.approx(0.5)
    assert data["nnrnn"]["percent_of_peak_mean"] is None and data["nnrnn"]["max_load"] == 2.6
    per_seed = load_run(path).set_index(["model", "seed"])
    assert per_seed.loc[("scratch", 1), "flops_per_sec"] == 1.5e9
    assert per_seed.loc[("scratch", 1), "percent_of_peak"] == pytest.approx(15.0)
    assert per_seed.loc[("scratch", 0), "tokens_per_sec_unreliable"] is False


def test_an_old_run_without_a_peak_still_reports_with_percent_blank(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path / "a", peak=False))
    cells = dict(zip(header(text), summary_row(text, "scratch")))
    assert cells["FLOP/s"] == "1 G †" and cells["% of peak"] == ""
    assert "which this run did not measure" in section(text, "## Results")
    summary = summarize_runs(load_run(make_run(tmp_path / "b", peak=False).path)
                             .drop(columns="run_id"))
    assert summary["percent_of_peak_mean"].isna().all()


def test_an_old_run_without_any_of_it_reports_as_before(tmp_path: Path) -> None:
    store = make_run(tmp_path, peak=False, measured=False)
    text = render_report(store)
    results = section(text, "## Results")
    assert "FLOP/s" not in results and "% of peak" not in results and "†" not in results
    assert dict(zip(header(text), summary_row(text, "scratch")))["tokens_per_sec"] == \
        "2000 ± 1414"
    rows = list(csv.DictReader(io.StringIO(format_summary(
        summarize_runs(load_run(store.path).drop(columns="run_id")), "csv"))))
    assert {r["tokens_per_sec_unreliable"] for r in rows} == {""}  # unknown, not False
    assert {r["flops_per_sec_mean"] for r in rows} == {""}


def test_a_held_out_report_has_the_efficiency_columns_too(tmp_path: Path) -> None:
    store = heldout_run(tmp_path, target=False)
    store.update_manifest(extra={**store.manifest().extra, "peak": [
        {**PEAK, "threads": None, "flops_per_sec": 1e8}]})
    text = render_report(store)
    cells = dict(zip(header(text), summary_row(text, "lstm")))
    # 10 x 5000 params FLOPs/token x 500 tokens/s = 2.5e7 FLOP/s, 25 % of 1e8
    assert cells["FLOPs/token"] == "50000" and cells["FLOP/s"] == "25 M"
    assert cells["% of peak"] == "25.0 ± 0.0"


def test_a_group_above_its_peak_says_the_peak_was_measured_low(tmp_path: Path) -> None:
    # scratch's seeds reach 5e8 and 1.5e9 FLOP/s: 100 % and 300 % of a 5e8 peak
    results = section(render_report(make_run(tmp_path / "low", peak_rate=5e8)), "## Results")
    assert "**The peak was measured low**: scratch / random reached more than 100 %" in results
    normal = section(render_report(make_run(tmp_path / "ok")), "## Results")
    assert "measured low" not in normal
