from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.results.plots import is_png
from harness.plan.recipe import Recipe
from harness.results.report import PLOTS, THROUGHPUT_PNG, render_report, write_report
from harness.results.schema import Manifest, Record
from harness.results.store import RunStore

NASTY = "a | b `c` d\nnext line"


def make_run(tmp_path: Path, settings: dict | None = None) -> RunStore:
    store = RunStore.create(tmp_path, Manifest.from_json({
        "status": "partial",
        "settings": settings or {"task": "t", "models": ["m"], "samplers": ["s"], "seeds": [0],
                                 "recipe": {"epochs": 2}, "corpus": {"sha1": "abc"}},
        "environment": {"torch": "x", "plugins": [{"plugin": "p", "distribution": "d",
                                                   "version": "1"}]},
    }))
    store.append_record(Record.from_json({
        "key": "m__s__seed0", "model": "m", "sampler": "s", "seed": 0,
                         "status": "ok", "train_ppl": 1.25, "valid_ppl": 2.5,
                         "tokens_per_sec": 1234.4, "wall_seconds": 3.0, "num_params": 10,
                         "generated": {"the": "the end", "odd": NASTY}}),
                        [{"epoch": 1, "train_ppl": 3.0, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": 1.25, "tokens_per_sec": 1.0, "valid_ppl": 2.5}])
    store.append_record(Record.from_json({
        "key": "m__s__seed1", "model": "m", "sampler": "s", "seed": 1,
                         "status": "ok", "train_ppl": 1.75, "valid_ppl": 3.5,
                         "tokens_per_sec": 1000.0, "wall_seconds": 3.0, "num_params": 10}),
                        [{"epoch": 1, "train_ppl": 3.5, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": 1.75, "tokens_per_sec": 1.0, "valid_ppl": 3.5}])
    store.append_record(Record.from_json({
        "key": "m2__s__seed0", "model": "m2", "sampler": "s", "seed": 0,
                         "status": "failed", "error": "boom | `x`"}))
    # A diverged combination: its curve holds a non-finite epoch (stored as null).
    store.append_record(Record.from_json({
        "key": "m3__s__seed0", "model": "m3", "sampler": "s", "seed": 0,
                         "status": "diverged", "error": "non-finite loss (nan) in epoch 2"}),
                        [{"epoch": 1, "train_ppl": 9.0, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": float("nan"), "tokens_per_sec": 1.0,
                          "valid_ppl": None}])
    return store


def test_report_shows_settings_results_generated_text_and_curves(tmp_path: Path) -> None:
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


def test_generated_text_is_escaped_so_rows_stay_rows(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    section = text.split("## Generated text")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2  # header, rule, two prefixes
    assert "a \\| b \\`c\\` d<br>next line" in section
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
    store = RunStore.create(tmp_path, Manifest.from_json({"status": "interrupted"}))
    text = write_report(store).read_text()
    assert "No combination has finished." in text
    assert not (store.path / PLOTS).exists() or not any((store.path / PLOTS).iterdir())


TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


def reference_run(tmp_path: Path, rows: list[tuple[str, str, float, dict]],
                  recipe: dict | None = None, **manifest: object) -> RunStore:
    """A finished run of the Time Machine (one seed per row: model, sampler, train ppl,
    --set settings); ``manifest`` adds or replaces top-level manifest keys."""
    settings = {"task": "timemachine", "recipe": recipe or Recipe().to_dict(),
                "corpus": {"sha1": TIMEMACHINE_SHA1}}
    store = RunStore.create(tmp_path, Manifest.from_json(
        {"status": "complete", "settings": settings, **manifest}))
    for number, (model, sampler, ppl, point) in enumerate(rows):
        store.append_record(Record.from_json({
            "key": f"{model}__{sampler}__{number}__seed0", "model": model,
            "sampler": sampler, "seed": 0, "settings": point, "status": "ok",
            "train_ppl": ppl}))
    return store


def reference_section(store: RunStore) -> str:
    return render_report(store).split("## Reference numbers")[1].split("\n## ")[0]


def test_reference_numbers_appear_beside_matching_rows(tmp_path: Path) -> None:
    # A manifest without references (as committed runs have): the shipped task's are used.
    store = reference_run(tmp_path, [("scratch", "sequential", 1.04, {}),
                                     ("scratch", "sequential-reset", 1.61, {}),
                                     ("scratch", "random", 1.5, {})])
    rows = [line for line in reference_section(store).splitlines()
            if line.startswith("| scratch")]
    assert len(rows) == 2  # random has no reference number
    assert "1.040" in rows[0] and "| 1.0 " in rows[0] and "1.0 to 1.2" in rows[0]
    assert "| yes " in rows[0] and "d2l §8.5" in rows[0] and "train ppl" in rows[0]
    assert "1.3 to 1.5" in rows[1] and "| 1.6 " in rows[1] and "| no " in rows[1]


def test_each_group_of_a_grid_is_matched_with_its_own_settings(tmp_path: Path) -> None:
    store = reference_run(tmp_path, [("scratch", "sequential", 1.04, {"precision": "bf16"}),
                                     ("scratch", "sequential", 1.04, {"max_tokens": 5000}),
                                     ("scratch", "sequential", 1.04, {"clip": 0.5})])
    rows = [line for line in reference_section(store).splitlines()
            if line.startswith("| scratch")]
    assert len(rows) == 1 and "bf16" in rows[0]  # precision is not a training setting


def test_the_manifests_references_are_used_without_a_task_file(tmp_path: Path) -> None:
    entry = {"model": "scratch", "sampler": "random", "metric": "train_ppl", "low": 1.4,
             "high": 1.6, "source": "our notes", "settings": {}, "digits": None,
             "ignore": []}
    stored = {"task": "timemachine", "corpus_sha1": TIMEMACHINE_SHA1,
              "recipe": Recipe().to_dict(), "entries": [entry]}
    store = reference_run(tmp_path, [("scratch", "sequential", 1.04, {}),
                                     ("scratch", "random", 1.5, {})], references=stored)
    rows = [line for line in reference_section(store).splitlines()
            if line.startswith("| scratch")]
    assert len(rows) == 1 and "| random " in rows[0] and "| 1.4 to 1.6 " in rows[0]
    assert "our notes" in rows[0] and "| yes " in rows[0]


def test_unreadable_references_are_said_not_raised(tmp_path: Path) -> None:
    store = reference_run(tmp_path, [("scratch", "sequential", 1.04, {})],
                          references={"task": "timemachine", "entries": 3})
    assert "reference numbers cannot be read" in reference_section(store)


def test_no_reference_row_says_why(tmp_path: Path) -> None:
    store = reference_run(tmp_path, [("scratch", "sequential", 1.04, {})],
                          recipe={**Recipe().to_dict(), "max_tokens": 5000})
    assert "no group of this run has those settings" in reference_section(store)


@pytest.mark.parametrize("content", [b"epoch,train_ppl\n1,abc\n", b"epoch,train_ppl\n1,\xff\n"])
def test_an_unreadable_curve_is_skipped_said_and_the_rest_written(tmp_path: Path,
                                                                   content: bytes) -> None:
    store = make_run(tmp_path)
    bad = store.path / "curves" / "m__s__seed1.csv"
    bad.write_bytes(content)
    with pytest.warns(UserWarning, match=f"skipping a curve: {bad}: not a curve") as caught:
        text = write_report(store).read_text()
    assert len(caught) == 1  # said once, though the charts and the table both read curves
    assert ("Skipped a curve file that cannot be read: curves/m\\_\\_s\\_\\_seed1.csv: not a "
            "curve (") in text and str(tmp_path) not in text
    assert "m/s/seed0 train" in text and "m/s/seed1 train" not in text  # the rest is there
    assert "m3/s/seed0 train" in text
    plots = sorted(p.name for p in (store.path / PLOTS).iterdir())
    assert plots == ["curves-01-m_s.png", "curves-03-m3_s.png", THROUGHPUT_PNG]


def test_a_linked_plots_folder_is_refused_and_left_untouched(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    (store.path / PLOTS).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=f"{store.path / PLOTS} is a symbolic link"):
        write_report(store)
    assert [p.name for p in elsewhere.iterdir()] == ["notes.txt"]
    assert (store.path / PLOTS).is_symlink() and not (store.path / "report.md").exists()


def test_plugins_of_any_shape_in_the_environment_still_render(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    for plugins in (5, [5, {"plugin": "p"}], None):
        store.update_manifest(environment={"torch": "x", "plugins": plugins})
        assert "## Environment" in render_report(store)
