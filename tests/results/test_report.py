import warnings
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.results.plots import is_png
from harness.plan.recipe import Recipe
from harness.results.heldout_report import OVERLAY_SECONDS, OVERLAY_TOKENS
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


# Held-out runs (a task with [splits]) ------------------------------------------------------

HELDOUT_CORPUS = {"sha1": "abc", "vocab_size": 28, "train_tokens": 800, "valid_tokens": 100,
                  "test_tokens": 100, "bounds": [800, 900, 1000]}


def heldout_curve(seconds: list[float], valid: list[float], epochs: list[int] | None = None,
                  tokens: list[int] | None = None) -> list[dict]:
    tokens = tokens or [1000 * (i + 1) for i in range(len(valid))]
    epochs = epochs or [1] * len(valid)
    return [{"epoch": e, "step": t // 100, "tokens": t, "seconds": s, "lr": 0.003,
             "train_bpc": v + 0.1, "valid_bpc": v, "valid_ppl": 2 ** v, "eval_seconds": 0.1,
             "threads": 2} for e, t, s, v in zip(epochs, tokens, seconds, valid)]


def heldout_run(tmp_path: Path, *, count_model: str | None = "kn5", target: bool = True,
                flops: bool = True) -> RunStore:
    """A held-out run: lstm (2 seeds, both reach the target), gru (diverged) and, unless
    ``count_model`` is None, a count model of that name (2 seeds, one curve row each; named
    by ``trained_by`` unless it is ``ngram``)."""
    recipe = {**Recipe().to_dict(), "optimizer": "adamw", "schedule": "cosine",
              "weight_decay": 0.1, "budget_tokens": 3000}
    if target:
        recipe.update(target_metric="valid_bpc", target_value=2.5)
    store = RunStore.create(tmp_path, Manifest.from_json({
        "status": "complete",
        "settings": {"task": "tm-full", "models": ["lstm", "gru"], "samplers": ["random"],
                     "seeds": [0, 1], "recipe": recipe, "corpus": HELDOUT_CORPUS}}))

    def record(model: str, seed: int, test_bpc: float, **fields: object) -> Record:
        extra = {"flops_per_token": 10 * fields.get("num_params", 0)} if flops else {}
        return Record.from_json({"key": f"{model}__random__seed{seed}", "model": model,
                                 "sampler": "random", "seed": seed, "status": "ok",
                                 "train_ppl": 6.0, "valid_ppl": 5.0, "tokens_per_sec": 500.0,
                                 "valid_bpc": test_bpc - 0.05, "test_bpc": test_bpc,
                                 "test_ppl": 2 ** test_bpc, **extra, **fields})

    reached = {"tokens_to_target": None, "seconds_to_target": None}
    for seed, (test, tokens, seconds, times, valid) in enumerate([
            (2.4, 2000, 4.0, [2.0, 4.0, 6.0], [3.0, 2.45, 2.4]),
            (2.7, 3000, 7.0, [2.5, 5.0, 7.0], [3.1, 2.6, 2.5])]):
        if target:
            reached = {"tokens_to_target": tokens, "seconds_to_target": seconds}
        store.append_record(record("lstm", seed, test, num_params=5000, trained_by="gradient",
                                   **reached), heldout_curve(times, valid))
    store.append_record(Record.from_json({"key": "gru__random__seed0", "model": "gru",
                                          "sampler": "random", "seed": 0, "num_params": 7000,
                                          "status": "diverged", "error": "nan"}),
                        heldout_curve([1.0], [3.5]))
    if count_model is not None:
        by = {} if count_model == "ngram" else {"trained_by": "counts"}
        for seed, seconds in enumerate([0.5, 0.7]):
            store.append_record(record(count_model, seed, 2.6, num_params=0, **by),
                                heldout_curve([seconds], [2.55], tokens=[800]))
    return store


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n")[1].split("\n## ")[0]


def test_a_heldout_report_shows_splits_and_the_training_recipe(tmp_path: Path) -> None:
    settings = section(render_report(heldout_run(tmp_path)), "## Settings")
    assert "| train / validation / test tokens | 800 / 100 / 100" in settings
    assert "train 0 to 800, validation 800 to 900, test 900 to 1000" in settings
    assert "| optimizer " in settings and "| adamw " in settings and "| cosine " in settings
    assert "| weight\\_decay " in settings and "| 0.1 " in settings
    assert "| budget " in settings and "3000 tokens" in settings
    assert "| target " in settings and "valid\\_bpc ≤ 2.5 (training goes on)" in settings
    assert "max\\_tokens" not in settings and "train / validation tokens |" not in settings


def test_heldout_results_have_params_flops_and_only_measured_columns(tmp_path: Path) -> None:
    text = render_report(heldout_run(tmp_path, target=False))
    results = section(text, "## Results")
    header = results.split("### Per seed")[0]
    assert "| params " in header and "| FLOPs/token " in header
    lstm = next(line for line in header.splitlines() if line.startswith("| lstm"))
    assert "| 5000 " in lstm and "| 50000 " in lstm and "2.550 ± 0.212" in lstm
    # no target: nobody measured the time to one, so neither table has those columns
    assert "tokens_to_target" not in text and "## Time to target" not in text
    per_seed = [c.strip() for c in results.split("### Per seed")[1].split("\n")[2].split("|")]
    assert "test_bpc" in per_seed and "train_bpc" not in per_seed  # no record measured it
    without = section(render_report(heldout_run(tmp_path / "b", flops=False)), "## Results")
    assert "FLOPs/token" not in without and "| params " in without


def test_the_baseline_is_the_best_count_model_and_each_group_is_told(tmp_path: Path) -> None:
    results = section(render_report(heldout_run(tmp_path)), "## Results")
    assert "**Baseline:** kn5 / random, the best count model, 2.600 test bpc" in results
    assert "- lstm / random: its mean test bpc, 2.550, is below the baseline (2.600)." in results
    assert "- gru / random has no test bpc (no ok seed), so it cannot be compared." in results
    assert results.index("**Baseline:**") < results.index("### Per seed")


def test_a_count_model_is_found_by_name_without_trained_by(tmp_path: Path) -> None:
    text = render_report(heldout_run(tmp_path, count_model="ngram"))
    assert "**Baseline:** ngram / random, the best count model, 2.600 test bpc" in text
    text = render_report(heldout_run(tmp_path / "none", count_model=None))
    assert "**Baseline:** no count-model baseline in this run." in text
    assert "is below the baseline" not in text


def test_time_to_target_per_group(tmp_path: Path) -> None:
    target = section(render_report(heldout_run(tmp_path)), "## Time to target")
    assert target.startswith("\nTarget: valid_bpc ≤ 2.5 (training goes on).")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in target.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["lstm"] == ["2/2", "2500 ± 707", "5.5 ± 2.1"]
    assert rows["kn5"] == ["0/2", "not reached", "not reached"]
    assert rows["gru"] == ["0/0", "not reached", "not reached"]


def test_heldout_curves_are_read_charted_and_tabled(tmp_path: Path) -> None:
    store = heldout_run(tmp_path)
    assert [row["epoch"] for row in store.curve("lstm__random__seed0")] == [1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no curve is skipped
        text = write_report(store).read_text()
    plots = sorted(p.name for p in (store.path / PLOTS).iterdir())
    assert plots == ["bpc-01-gru_random.png", "bpc-02-kn5_random.png", "bpc-03-lstm_random.png",
                     OVERLAY_SECONDS, OVERLAY_TOKENS, THROUGHPUT_PNG]
    for name in plots:
        assert is_png((store.path / PLOTS / name).read_bytes())
        assert f"({PLOTS}/{name})" in text
    curves = section(text, "## Validation curves")
    assert f"({PLOTS}/{OVERLAY_TOKENS})" in curves and f"({PLOTS}/{OVERLAY_SECONDS})" in curves
    assert "Skipped a curve" not in text and "Perplexity by epoch" not in text
    table = section(text, "## Training curves")
    assert "| lstm/random/seed1 | 1       | 3000     |       7.0 |" in table


def test_a_curve_must_increase_in_tokens_when_it_has_them(tmp_path: Path) -> None:
    store = heldout_run(tmp_path)
    path = store.path / "curves" / "lstm__random__seed0.csv"
    path.write_text("epoch,tokens,valid_bpc\n1,2000,3.0\n1,1000,2.9\n")
    with pytest.raises(ConfigError, match="its tokens do not increase"):
        store.curve("lstm__random__seed0")
    path.write_text("epoch,tokens,valid_bpc\n2,1000,3.0\n1,2000,2.9\n")
    with pytest.raises(ConfigError, match="its epochs decrease"):
        store.curve("lstm__random__seed0")
    path.write_text("epoch,train_ppl\n1,3.0\n1,2.9\n")  # d2l's: an epoch per row
    with pytest.raises(ConfigError, match="its epochs do not increase"):
        store.curve("lstm__random__seed0")


def test_a_d2l_report_gets_none_of_the_heldout_sections(tmp_path: Path) -> None:
    text = write_report(make_run(tmp_path)).read_text()
    for absent in ("## Time to target", "## Validation curves", "Baseline", "| params",
                   "bpc", "FLOPs", "test tokens", "overlay"):
        assert absent not in text
    per_seed = section(text, "### Per seed").splitlines()[1]
    assert per_seed.split() == ["|", "model", "|", "sampler", "|", "seed", "|", "status", "|",
                                "train_ppl", "|", "valid_ppl", "|", "tokens_per_sec", "|",
                                "wall_seconds", "|", "num_params", "|"]
    assert "| train / validation tokens " in text and "Perplexity by epoch" in text


def test_the_lowest_count_model_is_the_baseline_and_the_others_are_told(tmp_path: Path) -> None:
    store = heldout_run(tmp_path)
    store.append_record(Record.from_json({
        "key": "kn3__random__seed0", "model": "kn3", "sampler": "random", "seed": 0,
        "status": "ok", "test_bpc": 2.9, "trained_by": "counts"}))
    results = section(render_report(store), "## Results")
    assert "**Baseline:** kn5 / random, the best count model, 2.600 test bpc" in results
    assert "- kn3 / random: its mean test bpc, 2.900, is not below the baseline (2.600)." \
        in results
