from pathlib import Path

from harness.results.plots import is_png
from harness.data.references import TIMEMACHINE_SHA1
from harness.plan.recipe import Recipe
from harness.results.report import PLOTS, THROUGHPUT_PNG, render_report, write_report
from harness.results.store import RunStore

NASTY = "a | b `c` d\nnext line"


def make_run(tmp_path: Path, settings: dict | None = None) -> RunStore:
    store = RunStore.create(tmp_path, {
        "status": "partial",
        "settings": settings or {"task": "t", "models": ["m"], "samplers": ["s"], "seeds": [0],
                                 "recipe": {"epochs": 2}, "corpus": {"sha1": "abc"}},
        "environment": {"torch": "x", "plugins": [{"plugin": "p", "distribution": "d",
                                                   "version": "1"}]},
    })
    store.append_record({"key": "m__s__seed0", "model": "m", "sampler": "s", "seed": 0,
                         "status": "ok", "train_ppl": 1.25, "valid_ppl": 2.5,
                         "tokens_per_sec": 1234.4, "wall_seconds": 3.0, "num_params": 10,
                         "samples": {"the": "the end", "odd": NASTY}},
                        [{"epoch": 1, "train_ppl": 3.0, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": 1.25, "tokens_per_sec": 1.0, "valid_ppl": 2.5}])
    store.append_record({"key": "m__s__seed1", "model": "m", "sampler": "s", "seed": 1,
                         "status": "ok", "train_ppl": 1.75, "valid_ppl": 3.5,
                         "tokens_per_sec": 1000.0, "wall_seconds": 3.0, "num_params": 10},
                        [{"epoch": 1, "train_ppl": 3.5, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": 1.75, "tokens_per_sec": 1.0, "valid_ppl": 3.5}])
    store.append_record({"key": "m2__s__seed0", "model": "m2", "sampler": "s", "seed": 0,
                         "status": "failed", "error": "boom | `x`"})
    # A diverged combination: its curve holds a non-finite epoch (stored as null).
    store.append_record({"key": "m3__s__seed0", "model": "m3", "sampler": "s", "seed": 0,
                         "status": "diverged", "error": "non-finite loss (nan) in epoch 2"},
                        [{"epoch": 1, "train_ppl": 9.0, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": float("nan"), "tokens_per_sec": 1.0,
                          "valid_ppl": None}])
    return store


def test_report_shows_settings_results_samples_and_curves(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    assert "| epochs" in text and "abc" in text and "p (d 1)" in text
    assert "1.500 ± 0.354" in text and "3.000 ± 0.707" in text and "1117 ± 166" in text
    assert "| 2/2 " in text and "| 0/1 " in text and "failed: 0" in text and "diverged: 0" in text
    assert "1.250" in text and "1234" in text  # the per-seed table
    assert "the end" in text
    assert "m/s/seed0 train" in text and "3.000" in text


def test_failures_are_listed_and_never_averaged(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    section = text.split("## Not ok")[1].split("\n## ")[0]
    assert "m2" in section and "failed" in section and "boom \\| \\`x\\`" in section
    assert "m3" in section and "diverged" in section
    assert "No curve was recorded (failed: 0)" in text


def test_samples_are_escaped_so_rows_stay_rows(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    samples = text.split("## Samples")[1].split("\n## ")[0]
    rows = [line for line in samples.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2  # header, rule, two samples
    assert "a \\| b \\`c\\` d<br>next line" in samples
    assert all(line.replace("\\|", "").count("|") == 6 for line in rows)


def test_charts_are_written_and_linked(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    text = write_report(store).read_text()
    plots = sorted(p.name for p in (store.path / PLOTS).iterdir())
    assert plots == ["curves-01-m_s.png", "curves-03-m3_s.png", THROUGHPUT_PNG]
    for name in plots:
        assert is_png((store.path / PLOTS / name).read_bytes())
        assert f"({PLOTS}/{name})" in text


def test_report_is_regenerated_identically_from_the_store(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    first = write_report(store).read_text()
    charts = {p.name: p.read_bytes() for p in (store.path / PLOTS).iterdir()}
    again = RunStore.open(store.path)
    assert write_report(again).read_text() == first
    assert {p.name: p.read_bytes() for p in (store.path / PLOTS).iterdir()} == charts


def test_stale_charts_are_removed_on_regeneration(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    (store.path / PLOTS).mkdir()
    (store.path / PLOTS / "curves-09-gone.png").write_bytes(b"old")
    write_report(store)
    assert not (store.path / PLOTS / "curves-09-gone.png").exists()


def test_an_empty_run_still_renders(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, {"status": "interrupted", "settings": {}})
    text = write_report(store).read_text()
    assert "No combination has finished." in text
    assert not (store.path / PLOTS).exists() or not any((store.path / PLOTS).iterdir())


def test_d2l_numbers_appear_beside_matching_rows(tmp_path: Path) -> None:
    settings = {"task": "timemachine", "recipe": Recipe().to_dict(),
                "corpus": {"sha1": TIMEMACHINE_SHA1}}
    store = RunStore.create(tmp_path, {"status": "complete", "settings": settings})
    for sampler, ppl in (("sequential", 1.04), ("sequential-reset", 1.61), ("random", 1.5)):
        store.append_record({"key": f"scratch__{sampler}__seed0", "model": "scratch",
                             "sampler": sampler, "seed": 0, "status": "ok", "train_ppl": ppl})
    section = render_report(store).split("## Compared with d2l")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| scratch")]
    assert len(rows) == 2  # random has no published number
    assert "1.040" in rows[0] and "| 1.0 " in rows[0] and "1.0 to 1.2" in rows[0]
    assert "| yes " in rows[0] and "8.5" in rows[0]
    assert "1.3 to 1.5" in rows[1] and "| 1.6 " in rows[1] and "| no " in rows[1]


def test_no_d2l_row_says_why(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    assert "no row of this run has those settings" in text
