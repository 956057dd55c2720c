from pathlib import Path

import pytest

from harness.data.references import Reference, ReferenceSet, parse_reference
from harness.data.taskfile import load_task
from harness.errors import ConfigError
from harness.plan.recipe import Recipe

TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
DEFAULTS = Recipe().to_dict()
SEED_RECIPE = Recipe().to_dict()  # d2l's §8.5 recipe: 512 hidden, lr 1, 500 epochs
D2L = load_task("timemachine").reference_set
PINNED = "[corpus]\npath = 'a'\nsha1 = '" + "a" * 40 + "'\n"  # references need a sha1


def find(model: str, sampler: str, recipe: dict, task: str = "timemachine",
         sha1: str | None = TIMEMACHINE_SHA1) -> Reference | None:
    found = D2L.matching(model, sampler, task=task, corpus_sha1=sha1, recipe=recipe,
                         defaults=DEFAULTS)
    assert len(found) <= 1
    return found[0] if found else None


def test_the_seed_recipe_finds_d2l_8_5_numbers() -> None:
    sequential = find("scratch", "sequential", SEED_RECIPE)
    reset = find("scratch", "sequential-reset", SEED_RECIPE)
    assert (sequential.low, sequential.high) == (1.0, 1.2) and "8.5" in sequential.source
    assert (reset.low, reset.high) == (1.3, 1.5) and sequential.metric == "train_ppl"


def test_chapter_9_rows_are_keyed_by_their_own_settings() -> None:
    small = {**SEED_RECIPE, "num_hiddens": 256}
    deep = {**small, "num_layers": 2, "lr": 2.0}
    assert find("gru", "sequential", small).text() == "1.0 to 1.1"
    assert find("scratch-lstm", "sequential", small).text() == "1.3"
    assert find("lstm", "sequential", deep).text() == "1.0"
    assert find("lstm", "sequential", small).text() == "1.1 to 1.2"
    assert find("nnrnn", "sequential", small).source == "d2l §8.6"
    assert find("nnrnn", "sequential", SEED_RECIPE) is None  # d2l's 8.6 uses 256


@pytest.mark.parametrize("field,value", [
    ("epochs", 50), ("batch_size", 64), ("num_steps", 20), ("max_tokens", 20_000),
    ("clip", 0.5), ("dropout", 0.1), ("num_hiddens", 256), ("num_layers", 2), ("lr", 0.5),
])
def test_changing_any_training_setting_removes_the_match(field: str, value: object) -> None:
    assert find("scratch", "sequential", SEED_RECIPE) is not None
    assert find("scratch", "sequential", {**SEED_RECIPE, field: value}) is None


def test_max_tokens_and_clip_are_compared_like_every_other_setting() -> None:
    # A published number is for d2l's first 10,000 tokens, clipped at 1: a run on more
    # text, or clipped differently, trained on other terms, in every chapter's entry.
    for model, sampler, recipe in [("scratch", "sequential-reset", SEED_RECIPE),
                                   ("gru", "sequential", {**SEED_RECIPE, "num_hiddens": 256}),
                                   ("lstm", "sequential", {**SEED_RECIPE, "num_hiddens": 256,
                                                           "num_layers": 2, "lr": 2.0})]:
        assert find(model, sampler, recipe) is not None
        assert find(model, sampler, {**recipe, "max_tokens": 5_000}) is None
        assert find(model, sampler, {**recipe, "clip": 5.0}) is None
        assert find(model, sampler, {**recipe, "max_tokens": 5_000, "clip": 5.0}) is None


def test_settings_the_entry_ignores_keep_the_match() -> None:
    # Validation settings do not change training; bf16 is set beside the fp32 number.
    changed = {**SEED_RECIPE, "valid_tokens": 0, "eval_every": 0, "precision": "bf16"}
    assert find("scratch", "sequential", changed) is not None


def test_anything_else_has_no_reference() -> None:
    assert find("scratch", "random", SEED_RECIPE) is None
    assert find("rnn", "sequential", SEED_RECIPE) is None
    assert find("scratch", "sequential", SEED_RECIPE, task="mytext") is None
    assert find("scratch", "sequential", SEED_RECIPE, sha1="0" * 40) is None
    assert find("scratch", "sequential", SEED_RECIPE, sha1=None) is None
    assert find("scratch", "sequential", {"lr": 1.0}) is None  # an incomplete recipe
    assert find("scratch", "sequential", {**SEED_RECIPE, "momentum": 0.9}) is None


def test_a_task_without_a_corpus_sha1_matches_nothing() -> None:
    unpinned = ReferenceSet("timemachine", None, {}, D2L.entries)
    assert unpinned.matching("scratch", "sequential", task="timemachine", corpus_sha1=None,
                             recipe=SEED_RECIPE, defaults=DEFAULTS) == []


def test_the_entry_settings_apply_over_the_tasks_recipe_and_the_defaults() -> None:
    entry = Reference("m", "s", "train_ppl", 1.0, 2.0, "x", {"lr": 2.0})
    references = ReferenceSet("t", "a" * 40, {"epochs": 3}, (entry,))
    run = {**DEFAULTS, "epochs": 3, "lr": 2.0}

    def found(recipe: dict) -> list[Reference]:
        return references.matching("m", "s", task="t", corpus_sha1="a" * 40, recipe=recipe,
                                   defaults=DEFAULTS)

    assert found(run) == [entry]
    assert found({**run, "epochs": 500}) == [] and found({**run, "lr": 1.0}) == []
    truthy = Reference("m", "s", "train_ppl", 1.0, 2.0, "x", {"num_layers": True})
    assert not truthy.applies({}, {**DEFAULTS, "num_layers": 1}, DEFAULTS)  # True is not 1


def test_ours_is_rounded_as_the_source_prints_before_the_range_check() -> None:
    published = Reference("m", "s", "train_ppl", 1.0, 1.2, "d2l", digits=1)
    assert published.rounded(1.2499) == 1.2 and published.contains(1.2499)
    assert not published.contains(1.26)  # prints as 1.3
    assert published.contains(0.96) and not published.contains(0.94)
    assert Reference("m", "s", "p", 1.1, 1.1, "x", digits=1).contains(1.149)
    exact = Reference("m", "s", "p", 1.0, 1.2, "x")  # no digits: compared as it is
    assert not exact.contains(1.2499) and exact.text() == "1 to 1.2"
    assert published.text() == "1.0 to 1.2" and published.format(1.0371) == "1.0"


def test_every_d2l_entry_is_for_500_epochs_of_the_time_machine() -> None:
    assert (D2L.task, D2L.corpus_sha1) == ("timemachine", TIMEMACHINE_SHA1)
    for entry in D2L.entries:
        expected = {**DEFAULTS, **D2L.recipe, **entry.settings}
        assert (expected["epochs"], expected["batch_size"], expected["num_steps"],
                expected["max_tokens"], expected["clip"], expected["dropout"]) == (
            500, 32, 35, 10_000, 1.0, 0.0)
        assert entry.digits == 1 and entry.metric == "train_ppl"


def test_references_survive_the_manifest() -> None:
    assert ReferenceSet.from_json(D2L.to_json()) == D2L


@pytest.mark.parametrize("entry,match", [
    ("sampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\n", r"#1 model is missing"),
    ("model = 'm'\nsampler = 'a'\nlow = 'x'\nhigh = 2\nsource = 's'\n",
     r"#1 low must be a finite number, got 'x'"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = true\nsource = 's'\n",
     r"#1 high must be a finite number, got True"),
    ("model = 'm'\nsampler = 'a'\nlow = 2\nhigh = 1\nsource = 's'\n",
     r"#1 low \(2\) must not be above high \(1\)"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = ''\n",
     r"#1 source must be a non-empty string"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\nsettings = 3\n",
     r"#1 settings must be a table, got 3"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\nsettings = {lr = [1]}\n",
     r"#1 settings lr must be a string, number or boolean"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\ndigits = -1\n",
     r"#1 digits must be an integer >= 0 and at most 20, got -1"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\ndigits = 21\n",
     r"#1 digits must be an integer >= 0 and at most 20, got 21"),
    (f"model = 'm'\nsampler = 'a'\nlow = 1\nhigh = {10**309}\nsource = 's'\n",
     r"#1 high must be a finite number, got 1000"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\nsettings = {\"\\r\" = []}\n",
     r"#1 settings '\\r' must be a string, number or boolean"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\n\"a\\nb\" = 3\n",
     r"#1 has unknown key\(s\) 'a\\nb'; choose from: model, sampler"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\nignore = 'lr'\n",
     r"#1 ignore must be a list of recipe field names"),
    ("model = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\nhigh_ = 3\n",
     r"#1 has unknown key\(s\) high_; choose from: model, sampler"),
])
def test_a_malformed_reference_is_one_line_naming_the_file_and_key(
        tmp_path: Path, entry: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n" + PINNED + "[reference_defaults]\nmetric = 'train_ppl'\n"
                    "[[reference]]\n" + entry)
    with pytest.raises(ConfigError, match=rf"^task {path}: \[\[reference\]\] {match}") as caught:
        load_task(str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("digits", [21, 2**31, 2**63])
def test_a_stored_reference_with_too_many_digits_is_refused(digits: int) -> None:
    # A manifest's references go through the same check: a report would otherwise format
    # with a precision Python refuses ("precision too big").
    entry = {"model": "m", "sampler": "a", "metric": "train_ppl", "low": 1, "high": 2,
             "source": "s", "digits": digits}
    with pytest.raises(ValueError, match=rf"^digits must be an integer >= 0 and at most 20, "
                                         rf"got {digits}$"):
        ReferenceSet.from_json({"task": "t", "corpus_sha1": None, "entries": [entry]})
    assert parse_reference({**entry, "digits": 20}).format(1.5) == "1." + "5" + "0" * 19


@pytest.mark.parametrize("top,tables,match", [
    ("reference = 3\n", "", r"\[\[reference\]\] must be an array of tables, got 3"),
    ("reference = [3]\n", "", r"\[\[reference\]\] #1 must be a table, got 3"),
    ("", "[reference_defaults]\nmodel = 'm'\n",
     r"unknown key\(s\) \[reference_defaults\] model; choose from: metric, source"),
    ("", "[reference_defaults]\ndigits = 'one'\n[[reference]]\nmodel = 'm'\nsampler = 'a'\n"
     "metric = 'train_ppl'\nlow = 1\nhigh = 2\nsource = 's'\n",
     r"\[reference_defaults\] digits must be an integer"),
    ("", "[[reference]]\nmodel = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\n",
     r"\[\[reference\]\] #1 metric is missing"),
])
def test_malformed_reference_tables(tmp_path: Path, top: str, tables: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n" + top + PINNED + tables)
    with pytest.raises(ConfigError, match=rf"^task {path}: {match}"):
        load_task(str(path))


def test_references_need_the_corpus_sha1(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[corpus]\npath = 'a'\n[[reference]]\nmodel = 'm'\n"
                    "sampler = 'a'\nmetric = 'train_ppl'\nlow = 1\nhigh = 2\nsource = 's'\n")
    with pytest.raises(ConfigError, match=r"\[\[reference\]\] needs \[corpus\] sha1"):
        load_task(str(path))


def test_an_entry_overrides_the_reference_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("name = 'x'\n" + PINNED + "[reference_defaults]\nmetric = 'train_ppl'\n"
                    "digits = 1\n"
                    "[[reference]]\nmodel = 'm'\nsampler = 'a'\nlow = 1\nhigh = 2\nsource = 's'\n"
                    "[[reference]]\nmodel = 'm'\nsampler = 'a'\nmetric = 'valid_ppl'\n"
                    "digits = 2\nlow = 1\nhigh = 2\nsource = 's'\n")
    first, second = load_task(str(path)).references
    assert (first.metric, first.digits) == ("train_ppl", 1)
    assert (second.metric, second.digits) == ("valid_ppl", 2)
    assert parse_reference(second.to_json()) == second


def test_a_reference_to_an_unknown_metric_is_refused() -> None:
    from harness.data.references import parse_reference

    entry = {"model": "m", "sampler": "s", "metric": "trian_ppl", "low": 1.0, "high": 1.2,
             "source": "x"}
    with pytest.raises(ValueError, match="metric must be one of train_ppl, valid_ppl, "
                       "tokens_per_sec, train_bpc, .*, got 'trian_ppl'"):
        parse_reference(entry)
