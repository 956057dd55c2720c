import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import run
from harness.cli import main
from harness.results.compare import IncomparableRuns, compare_runs, format_comparison
from harness.errors import ConfigError
from harness.results.schema import Record, RunSettings
from harness.results.store import RunStore
from helpers import blank_manifest

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def runs(module_small_task: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small real runs: A and B share a recipe and one sampler; C has another lr."""
    out = tmp_path_factory.mktemp("runs")
    common = dict(models=["scratch"], seeds=SEEDS, task=str(module_small_task), output_dir=out,
                  quiet=True, epochs=2, max_tokens=400, valid_tokens=200)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a busy machine
    try:
        return {
            "A": run(samplers=["sequential", "random"], **common).path,
            "B": run(samplers=["sequential", "sequential-reset"], **common).path,
            "C": run(samplers=["sequential"], lr=2.0, **common).path,
        }
    finally:
        torch.set_num_threads(threads)


def rows(table, **where):
    mask = math.prod(table[k] == v for k, v in where.items())
    return table[mask.astype(bool)].to_dict(orient="records")


def test_shared_combinations_are_aligned_and_tested(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["A"], runs["B"]])
    assert not comparison.differences
    (train,) = rows(comparison.table, sampler="sequential", metric="train_ppl")
    # Same recipe and seeds: training is deterministic on CPU, so the numbers agree.
    assert train["n_ok"] == train["baseline_n_ok"] == 3
    assert train["change"] == pytest.approx(0.0) and train["p_value"] == pytest.approx(1.0)
    assert train["verdict"] == "not significant"
    (speed,) = rows(comparison.table, sampler="sequential", metric="tokens_per_sec")
    assert speed["change_kind"] == "ratio"
    assert speed["change"] == pytest.approx(speed["mean"] / speed["baseline_mean"])
    assert 0 <= speed["p_value"] <= 1


def test_a_missing_combination_shows_as_missing(runs: dict[str, Path]) -> None:
    table = compare_runs([runs["A"], runs["B"]]).table
    assert {r["verdict"] for r in rows(table, sampler="random")} == {"missing in B"}
    assert {r["verdict"] for r in rows(table, sampler="sequential-reset")} == {"missing in A"}
    text = format_comparison(compare_runs([runs["A"], runs["B"]]))
    assert "| missing " in text and "missing in A" in text


def test_runs_with_another_recipe_are_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(IncomparableRuns, match=r"recipe\.lr \(A 1\.0, B 2\.0\).*--force"):
        compare_runs([runs["A"], runs["C"]])


def test_a_forced_comparison_says_so(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["A"], runs["C"]], force=True)
    assert comparison.differences == ("recipe.lr (A 1.0, B 2.0)",)
    assert "Forced comparison" in format_comparison(comparison)
    assert "recipe.lr (A 1.0, B 2.0)" in format_comparison(comparison)
    parsed = list(csv.DictReader(io.StringIO(format_comparison(comparison, "csv"))))
    assert {r["forced_differences"] for r in parsed} == {"recipe.lr (A 1.0, B 2.0)"}
    data = json.loads(format_comparison(comparison, "json"))
    assert data["forced"] is True and data["differences"] == ["recipe.lr (A 1.0, B 2.0)"]


def test_cli_refuses_in_one_line_with_exit_2_and_forces_on_request(runs: dict[str, Path]) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["compare", str(runs["A"]), str(runs["C"])])
    assert refused.exit_code == 2
    assert len(refused.output.strip().splitlines()) == 1 and "recipe.lr" in refused.output
    forced = runner.invoke(main, ["compare", str(runs["A"]), str(runs["C"]), "--force",
                                  "--format", "json"])
    assert forced.exit_code == 0
    assert json.loads(forced.stdout)["forced"] is True


def test_three_runs_compare_each_with_the_first(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["A"], runs["B"], runs["C"]], force=True)
    assert set(comparison.table["run"]) == {"B", "C"}
    text = format_comparison(comparison)
    assert "**C**" in text and "| run " in text


def make_store(root: Path, values: dict[tuple, list[tuple[str, float, float]]],
               recipe: dict | None = None, grid: dict | None = None) -> Path:
    store = RunStore.create(root, blank_manifest(settings=RunSettings.from_json({
        "task": "t", "recipe": recipe or {"lr": 1.0}, "corpus": {"sha1": "abc"},
        "grid": grid or {}})))
    for (model, sampler, *setting), seeds in values.items():
        for seed, (status, ppl, speed) in enumerate(seeds):
            record = Record(key=f"{model}-{sampler}-{setting}-{seed}", model=model,
                            sampler=sampler, seed=seed, status=status,
                            metrics={"train_ppl": ppl, "tokens_per_sec": speed},
                            settings={"num_hiddens": setting[0]} if setting else {})
            store.append_record(record)
    return store.path


def test_verdicts_follow_welch_test_and_the_direction_of_better(tmp_path: Path) -> None:
    a = make_store(tmp_path, {("m", "s"): [("ok", 1.0, 100), ("ok", 1.1, 110), ("ok", 1.2, 90)],
                              ("m", "two"): [("ok", 1.0, 1), ("ok", 1.1, 1)],
                              ("m", "bad"): [("ok", 1.0, 1), ("ok", 1.1, 1), ("ok", 1.2, 1)]})
    b = make_store(tmp_path, {("m", "s"): [("ok", 2.0, 300), ("ok", 2.1, 310), ("ok", 2.2, 290)],
                              ("m", "two"): [("ok", 5.0, 1), ("ok", 5.1, 1)],
                              ("m", "bad"): [("failed", None, None), ("diverged", None, None)]})
    table = compare_runs([a, b]).table
    (ppl,) = rows(table, sampler="s", metric="train_ppl")
    assert ppl["change"] == pytest.approx(1.0) and ppl["p_value"] < 0.01
    assert ppl["verdict"] == "significant: worse"
    (speed,) = rows(table, sampler="s", metric="tokens_per_sec")
    assert speed["change"] == pytest.approx(3.0) and speed["verdict"] == "significant: better"
    (valid,) = rows(table, sampler="s", metric="valid_ppl")
    assert valid["verdict"] == "not measured"
    (two,) = rows(table, sampler="two", metric="train_ppl")
    assert two["change"] == pytest.approx(4.0) and math.isnan(two["p_value"])
    assert two["verdict"] == "not tested: fewer than 3 seeds"
    (bad,) = rows(table, sampler="bad", metric="train_ppl")
    assert bad["verdict"] == "no ok seed" and bad["not_ok"] == "diverged: 1; failed: 0"
    assert "no ok seed (0/2): diverged: 1; failed: 0" in format_comparison(compare_runs([a, b]))
    strict = compare_runs([a, b], alpha=1e-9).table
    assert rows(strict, sampler="s", metric="train_ppl")[0]["verdict"] == "not significant"


def test_per_record_settings_are_part_of_the_alignment(tmp_path: Path) -> None:
    a = make_store(tmp_path, {("m", "s", 256): [("ok", 1.0, 1)], ("m", "s", 512): [("ok", 2.0, 1)]})
    b = make_store(tmp_path, {("m", "s", 512): [("ok", 2.5, 1)]})
    table = compare_runs([a, b]).table
    by_size = {r["setting.num_hiddens"]: r for r in rows(table, metric="train_ppl")}
    assert by_size[512]["change"] == pytest.approx(0.5)
    assert by_size[256]["verdict"] == "missing in B"


def test_corpus_differences_are_listed(tmp_path: Path) -> None:
    a = make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]})
    b = make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}, recipe={"lr": 1.0})
    other = RunStore.open(b)
    manifest = other.manifest()
    settings = replace(manifest.settings, task="u", corpus={**manifest.settings.corpus,
                                                            "sha1": "def"})
    other.write_manifest(manifest.with_changes(settings=settings))
    with pytest.raises(IncomparableRuns) as error:
        compare_runs([a, b])
    message = str(error.value)
    assert "corpus.sha1 (A abc, B def)" in message and "task (A t, B u)" in message


def test_bad_input_is_a_config_error(tmp_path: Path) -> None:
    a = make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]})
    with pytest.raises(ConfigError, match="at least two"):
        compare_runs([a])
    with pytest.raises(ConfigError, match="not a run directory"):
        compare_runs([a, tmp_path / "nope"])
    with pytest.raises(ConfigError, match="alpha"):
        compare_runs([a, a], alpha=1.5)
    result = CliRunner().invoke(main, ["compare", str(a), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_precision_is_an_execution_choice_not_a_refusal(tmp_path: Path) -> None:
    a = make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}, recipe={"lr": 1.0,
                                                                   "precision": "fp32"})
    b = make_store(tmp_path, {("m", "s"): [("ok", 1.1, 1)]}, recipe={"lr": 1.0,
                                                                   "precision": "bf16"})
    assert compare_runs([a, b]).differences == ()
    c = make_store(tmp_path, {("m", "s"): [("ok", 1.1, 1)]}, recipe={"lr": 2.0,
                                                                   "precision": "bf16"})
    with pytest.raises(IncomparableRuns, match="recipe.lr"):
        compare_runs([a, c])


def test_recipe_fields_a_grid_varies_need_not_agree() -> None:
    from harness.results.compare import comparable_settings

    manifest = blank_manifest(settings=RunSettings.from_json(
        {"task": "t", "recipe": {"lr": 1.0, "epochs": 5}, "grid": {"lr": [0.5, 2.0]}}))
    flat = comparable_settings(manifest)
    assert "recipe.lr" not in flat and flat["recipe.epochs"] == 5
    plain = blank_manifest(settings=RunSettings.from_json({"recipe": {"lr": 1.0}}))
    assert "recipe.lr" in comparable_settings(plain)


def test_a_plain_run_pairs_with_the_grid_point_of_its_own_recipe(tmp_path: Path) -> None:
    plain = make_store(tmp_path, {("m", "s"): [("ok", 2.0, 1)] * 3},
                       recipe={"lr": 1.0, "num_hiddens": 16})
    grid = make_store(tmp_path, {("m", "s", 8): [("ok", 3.0, 1)] * 3,
                                 ("m", "s", 16): [("ok", 2.5, 1)] * 3},
                      recipe={"lr": 1.0, "num_hiddens": 512}, grid={"num_hiddens": [8, 16]})
    for runs, side in (([plain, grid], "baseline_mean"), ([grid, plain], "mean")):
        comparison = compare_runs(runs)
        assert comparison.differences == ()  # the grid's field is a group, not a refusal
        table = comparison.table[comparison.table.metric == "train_ppl"]
        by_point = dict(zip(table["setting.num_hiddens"], table["verdict"]))
        assert by_point[16] != "missing in A" and by_point[16] != "missing in B"
        (paired,) = rows(table, **{"setting.num_hiddens": 16})
        assert paired[side] == 2.0 and abs(paired["change"]) == pytest.approx(0.5)
        assert by_point[8].startswith("missing in")  # the plain run has no 8-unit model


def test_a_run_from_before_a_recipe_field_existed_pairs_at_its_default(tmp_path: Path) -> None:
    old = make_store(tmp_path, {("m", "s"): [("ok", 2.0, 1)]}, recipe={"lr": 1.0})
    grid = make_store(tmp_path, {("m", "s", 512): [("ok", 2.5, 1)],
                                 ("m", "s", 16): [("ok", 3.0, 1)]},
                      recipe={"lr": 1.0}, grid={"num_hiddens": [16, 512]})
    table = compare_runs([old, grid]).table
    (paired,) = rows(table, metric="train_ppl", **{"setting.num_hiddens": 512})
    assert paired["baseline_mean"] == 2.0 and paired["mean"] == 2.5  # 512: the default


# ---- the environments side by side (harness.results.envdiff) ----

def with_environment(path: Path, environment: dict) -> Path:
    store = RunStore.open(path)
    store.write_manifest(store.manifest().with_changes(environment=environment))
    return path


NEW_A = {"harness": "0.1.0",
         "harness_source": {"source": "git", "revision": "aaa", "dirty": False},
         "cpu": "Xeon", "cpu_flags": ["avx2", "avx512_bf16"],
         "torch_build": {"mkl": "2024.2", "onednn": "3.5.3"}, "torch_threads": 2,
         "math_env": {}, "gpu": None,
         "plugins": [{"plugin": "harness_builtins.rnn", "distribution": "rnn-harness",
                      "version": "0.1.0"}], "plugin_failures": []}
NEW_B = {**NEW_A, "harness_source": {"source": "git", "revision": "aaa", "dirty": True},
         "cpu": "EPYC", "cpu_flags": ["avx2"],
         "torch_build": {"mkl": "2024.2", "onednn": "3.7.1"}, "torch_threads": 1,
         "math_env": {"OMP_NUM_THREADS": "1"},
         "plugins": [{"plugin": "harness_builtins.rnn", "distribution": "rnn-harness",
                      "version": "0.2.0"},
                     {"plugin": "extra", "distribution": "extra-models", "version": "1.0"}],
         "plugin_failures": [{"plugin": "x", "distribution": "x", "version": "1",
                              "error": "boom"}]}


def test_runs_made_alike_say_their_environments_match(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["A"], runs["B"]])
    assert comparison.environment.match and comparison.environment.not_recorded == ()
    assert "**Environment**: the runs' environments match.\n" in \
        format_comparison(comparison) + "\n"
    parsed = list(csv.DictReader(io.StringIO(format_comparison(comparison, "csv"))))
    assert {r["environment_differences"] for r in parsed} == {"none"}
    data = json.loads(format_comparison(comparison, "json"))
    assert data["environment"] == {"match": True, "differences": [], "not_recorded": {}}


def test_each_differing_key_is_listed_with_each_runs_value(tmp_path: Path) -> None:
    a = with_environment(make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}), NEW_A)
    b = with_environment(make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}), NEW_B)
    comparison = compare_runs([a, b])
    assert dict(comparison.environment.differences) == {
        "harness_source.dirty": ("false", "true"),
        "cpu": ("Xeon", "EPYC"),
        "cpu_flags": ("avx2, avx512_bf16", "avx2"),
        "torch_build.onednn": ("3.5.3", "3.7.1"),
        "torch_threads": ("2", "1"),
        "math_env.OMP_NUM_THREADS": ("(not set)", "1"),
        "plugins.harness_builtins.rnn": ("rnn-harness 0.1.0", "rnn-harness 0.2.0"),
        "plugins.extra": ("(not loaded)", "extra-models 1.0"),
    }  # plugin_failures is not compared; equal keys are not listed
    text = format_comparison(comparison)
    assert "**Environment**: the runs' environments differ in these keys." in text
    assert "| cpu " in text and "| EPYC " in text and "| math\\_env.OMP\\_NUM\\_THREADS " in text
    assert "environments match" not in text
    parsed = list(csv.DictReader(io.StringIO(format_comparison(comparison, "csv"))))
    (summary,) = {r["environment_differences"] for r in parsed}
    assert "cpu (A Xeon, B EPYC)" in summary and "torch_build.onednn (A 3.5.3, B 3.7.1)" in summary
    data = json.loads(format_comparison(comparison, "json"))["environment"]
    assert data["match"] is False
    assert {"key": "math_env.OMP_NUM_THREADS", "values": {"A": "(not set)", "B": "1"}} \
        in data["differences"]


def test_keys_an_older_run_did_not_record_are_listed_apart(tmp_path: Path) -> None:
    old = with_environment(make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}),
                           {"harness": "0.1.0", "cpu": "Xeon", "torch_threads": 2})
    new = with_environment(make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}), NEW_A)
    other = with_environment(make_store(tmp_path, {("m", "s"): [("ok", 1.0, 1)]}),
                             {**NEW_A, "math_env": {"OMP_NUM_THREADS": "1"}})
    comparison = compare_runs([old, new])
    assert comparison.environment.match
    assert dict(comparison.environment.not_recorded)["cpu_flags"] == ("A",)
    text = format_comparison(comparison)
    assert "the runs' environments match in every key they all recorded." in text
    assert "A lacks harness\\_source, cpu\\_flags, torch\\_build, math\\_env, gpu, plugins" in text
    three = compare_runs([old, new, other]).environment
    assert three.differences == (
        ("math_env.OMP_NUM_THREADS", ("(not recorded)", "(not set)", "1")),)
