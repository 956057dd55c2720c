"""Fuzzing task files and corpus files: TOML text through ``parse_task`` and the plan gate,
and arbitrary bytes as a small task's corpus. Each either works or is one ConfigError or
CorpusError line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import pytest

import fuzzkit
from fuzzkit import (examples, fields, library_call, names, numbers, short_text, toml_document,
                     toml_values, tried, weighted)
from harness.data.taskfile import Task, parse_task
from harness.errors import ConfigError, HarnessError
from harness.plan.gate import plan_run
from harness.plan.request import RunRequest

SMALL_SHA1 = "7f9c491a77b74e2c16c1392468c53e94748f16ae"  # of conftest's small.txt


def maybe(valid: st.SearchStrategy, other: st.SearchStrategy = toml_values) -> st.SearchStrategy:
    """A key's value: mostly ``valid``, sometimes another value, sometimes left out."""
    return weighted(valid, other, none=True)


def with_extra(table: dict[str, Any]) -> st.SearchStrategy:
    """``table``, one time in ten with a key of its own added (a typo, a stray value)."""
    extra = st.tuples(st.one_of(fields, short_text), toml_values).map(
        lambda item: {**table, item[0]: item[1]})
    return weighted(st.just(table), extra, odds=40)


def table(**keys: st.SearchStrategy) -> st.SearchStrategy:
    """A TOML table of ``keys`` (None values are left out), sometimes with a stray key."""
    return st.fixed_dictionaries(keys).flatmap(with_extra)


# sane recipe values, so that many tasks get through to the plan (1500 tokens of corpus)
recipe_values = {
    "epochs": st.integers(1, 3), "batch_size": st.integers(1, 8), "num_steps": st.integers(1, 8),
    "num_hiddens": st.integers(1, 32), "num_layers": st.just(1),
    "dropout": st.floats(0, 0.9), "lr": st.floats(0.01, 2), "clip": st.floats(0.1, 2),
    "max_tokens": st.integers(100, 2000),
    "valid_tokens": st.sampled_from([0, 100, 300]) | st.integers(65, 300),
    "eval_every": st.integers(0, 3), "precision": st.sampled_from(["fp32", "bf16"]),
}
# Wrong values of every kind, huge numbers included, except for the two settings that size
# the model the dry run builds (num_layers=10**9 would build a billion layers).
wrong_recipe_values = st.one_of(numbers, st.booleans(), short_text, st.sampled_from(["fp16"]),
                                st.dates(), st.lists(st.integers(), max_size=2))
wrong_model_sizes = st.one_of(st.integers(-2, 0), st.integers(2, 4), st.booleans(), short_text,
                              st.floats(), st.sampled_from([10**6, 2**40, 2**63, 10**400]))


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A ``[recipe]`` table: batch_size, num_steps and max_tokens (the defaults need a longer
    corpus) and
    a few other settings, now and then one of them wrong."""
    others = sorted(set(recipe_values) - {"batch_size", "num_steps", "max_tokens"})
    chosen = ["batch_size", "num_steps", "max_tokens",
              *draw(st.lists(st.sampled_from(others), unique=True, max_size=5))]
    recipe = {}
    for key in chosen:
        wrong = wrong_model_sizes if key in ("num_layers", "num_hiddens") else wrong_recipe_values
        recipe[key] = draw(weighted(recipe_values[key], wrong | st.none(), odds=40))
    return draw(with_extra(recipe))


metrics = st.sampled_from(["train_ppl", "valid_ppl", "tokens_per_sec"])
bounds = st.one_of(st.integers(0, 30), st.floats(0, 30))
reference_entries = table(
    model=maybe(st.sampled_from(["scratch", "nnrnn"]), names),
    sampler=maybe(st.sampled_from(["sequential", "random"]), names),
    metric=maybe(metrics, st.sampled_from(["loss", "", "train ppl"]) | toml_values),
    low=maybe(bounds, numbers), high=maybe(bounds, numbers),
    source=maybe(st.sampled_from(["d2l 8.5", "paper"]), toml_values),
    settings=weighted(st.none(), st.dictionaries(fields, weighted(st.integers(1, 64), numbers,
                                                                  odds=3), max_size=2)),
    digits=weighted(st.none(), st.integers(0, 4) | st.integers(-1, 10**6) | toml_values),
    ignore=weighted(st.none(), st.lists(fields, max_size=2) | toml_values),
)

prefixes = st.lists(st.sampled_from(["the time", "the", "time traveller", "a quick fox"]),
                    max_size=3)
wrong_prefixes = st.lists(st.sampled_from(["", " ", "THE", "é", "q!", "\n", "t"]) | short_text,
                          min_size=1, max_size=3)

task_documents = table(
    name=maybe(st.sampled_from(["small", "fuzz", "two words"]),
               st.sampled_from(["", "  "]) | short_text | toml_values),
    description=weighted(st.none(), short_text, odds=1, none=False),
    tokenizer=maybe(st.sampled_from(["char", "word"]), st.sampled_from(["", "Char", "bpe"])),
    corpus=weighted(table(
        path=weighted(st.just("small.txt"), st.sampled_from(
            ["missing.txt", "", ".", "..", "/dev/null", "/", "small.txt/", "small.toml",
             "./small.txt", "SMALL.TXT"]) | toml_values | st.none()),
        url=weighted(st.none(), st.sampled_from(["https://example.invalid/a.txt", "", "x",
                                                 "https://example.invalid/"]) | toml_values,
                     odds=6),
        sha1=weighted(st.just(SMALL_SHA1), st.sampled_from(
            [SMALL_SHA1.upper(), "0" * 40, "abc", "g" * 40, ""]) | toml_values, odds=3,
            none=True),
    ), toml_values),
    recipe=weighted(recipes(), toml_values, none=True),
    generate=weighted(st.none(), table(
        prefixes=maybe(prefixes, wrong_prefixes | toml_values),
        num_preds=maybe(st.integers(1, 60), numbers | toml_values)), odds=1),
    defaults=weighted(st.none(), table(
        models=maybe(st.lists(st.sampled_from(["scratch", "nnrnn", "gru"]), max_size=2),
                     st.lists(names, max_size=2) | toml_values),
        samplers=maybe(st.lists(st.sampled_from(["sequential", "random"]), max_size=2),
                       st.lists(names, max_size=2) | toml_values)), odds=1),
    reference=weighted(st.none(), st.lists(reference_entries, min_size=1, max_size=2),
                       odds=2, none=False),
    reference_defaults=weighted(st.none(), table(
        metric=maybe(metrics), source=maybe(short_text),
        digits=maybe(st.integers(0, 4), st.integers(-1, 10**6) | toml_values),
        ignore=maybe(st.lists(fields, max_size=2))), odds=3),
)


@st.composite
def task_texts(draw: st.DrawFn) -> str:
    """A task file: a drawn document as TOML, sometimes edited as text, or any text."""
    kind = draw(st.sampled_from(["document"] * 8 + ["edited", "text"]))
    if kind == "text":
        return draw(st.text(fuzzkit.printable, max_size=200))
    try:
        text = toml_document(draw(task_documents))
    except ValueError:  # a None inside a list: TOML cannot hold it
        text = ""
    if kind == "edited":
        data = draw(fuzzkit.mutated_bytes(text.encode("utf-8")))
        text = data.decode("utf-8", errors="replace")
    return text


# ---------------------------------------------------------------------------------------
# bugs found and fixed: their minimal inputs, each now refused with one line

NEWLINE_KEYS = {
    "unknown [corpus] key (taskfile._TaskReader.keys)":
        ('name = "small"\n[corpus]\n"\\u000a" = false\n', "\n"),
    "[recipe] value of the wrong type (references.check_scalars)":
        ('name = "small"\n[corpus]\npath = "small.txt"\n[recipe]\n"\\u000d" = []\n', "\r"),
    "unknown [[reference]] key (references.parse_reference)":
        ('name = "small"\n[corpus]\npath = "small.txt"\nsha1 = "' + SMALL_SHA1
         + '"\n[[reference]]\n"a\\nb" = 1\n', "a\nb"),
}


@pytest.mark.parametrize(("minimal", "key"), NEWLINE_KEYS.values(), ids=list(NEWLINE_KEYS))
def test_a_key_holding_a_newline_is_named_on_one_line(minimal: str, key: str,
                                                      task_dir: Path) -> None:
    """raw-key-newline: a key holding CR or LF is named by its repr, on one line."""
    with pytest.raises(ConfigError) as refused:
        parse_task(minimal, base=task_dir, origin="fuzz.toml")
    fuzzkit.check_one_line(str(refused.value), "raw-key-newline")
    assert repr(key) in str(refused.value)


def test_a_corpus_path_holding_a_newline_is_named_on_one_line(task_dir: Path) -> None:
    """corpus-path-newline: 'corpus file not found' names the path by its repr."""
    path = task_dir / "newline-path.toml"
    path.write_text('name = "small"\n[corpus]\npath = "a\\nb.txt"\n', encoding="utf-8")
    with pytest.raises(HarnessError, match="corpus file not found") as refused:
        plan_task(path, task_dir / "out")
    fuzzkit.check_one_line(str(refused.value), "corpus-path-newline")
    assert repr(str(task_dir / "a\nb.txt")) in str(refused.value)


REFERENCE_TASK = ('name = "x"\n[corpus]\npath = "small.txt"\nsha1 = "{sha1}"\n[[reference]]\n'
                  'model = "scratch"\nsampler = "sequential"\nmetric = "train_ppl"\n'
                  'source = "s"\nlow = 0\nhigh = {high}\n')


def test_reference_bound_beyond_float_range_is_one_config_error(task_dir: Path) -> None:
    """reference-huge-int: a bound too large for a float is refused, not an OverflowError."""
    minimal = REFERENCE_TASK.format(sha1=SMALL_SHA1, high=10**309)
    with pytest.raises(ConfigError, match=r"#1 high must be a finite number, got 1000"):
        parse_task(minimal, base=task_dir, origin="fuzz.toml")


@pytest.mark.parametrize("setting", ["lr", "clip", "dropout"])
def test_a_float_setting_beyond_float_range_is_one_config_error(setting: str,
                                                                task_dir: Path) -> None:
    """recipe-huge-int: lr, clip or dropout of 10**309 is refused, not an OverflowError."""
    path = task_dir / f"huge-{setting}.toml"
    path.write_text(SMALL_TASK.replace("[recipe]\n", f"[recipe]\n{setting} = {10**309}\n"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{setting} must be a finite number"):
        plan_task(path, task_dir / "out")


def plan_task(path: Path, output: Path) -> Any:
    request = RunRequest(task=str(path), models=("scratch",), samplers=("sequential",),
                         quiet=True, device="cpu", output_dir=output)
    return plan_run(request, fuzzkit.registry())


SMALL_TASK = ('name = "small"\n[corpus]\npath = "small.txt"\n[recipe]\nepochs = 1\n'
              "batch_size = 4\nnum_steps = 5\nnum_hiddens = 8\nmax_tokens = 1500\n"
              'valid_tokens = 300\n[generate]\nprefixes = ["the time"]\nnum_preds = 5\n')


@settings(max_examples=examples(400))
@given(text=task_texts())
@example(text=SMALL_TASK)
def test_task_text_parses_or_is_one_config_error(text: str, task_dir: Path) -> None:
    tried("task file: parse_task")
    task = library_call(lambda: parse_task(text, base=task_dir, origin="fuzz.toml"),
                        "task file: parse_task", refusals=(ConfigError,))
    assert task is None or isinstance(task, Task)


@settings(max_examples=examples(250))
@given(text=task_texts())
@example(text=SMALL_TASK)
def test_task_file_plans_or_is_one_line(text: str, task_dir: Path) -> None:
    """Written next to the small corpus, the task goes through the whole gate."""
    tried("task file: plan gate")
    path = task_dir / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    library_call(lambda: plan_task(path, task_dir / "out"), "task file: plan gate")


SOUND_TASK: dict[str, Any] = {
    "name": "small", "description": "a sound task", "tokenizer": "char",
    "corpus": {"path": "small.txt", "sha1": SMALL_SHA1},
    "recipe": {"epochs": 1, "batch_size": 4, "num_steps": 5, "num_hiddens": 8, "num_layers": 1,
               "dropout": 0.0, "lr": 1.0, "clip": 1.0, "max_tokens": 1500,
               "valid_tokens": 300, "eval_every": 1, "precision": "fp32"},
    "generate": {"prefixes": ["the time", "a"], "num_preds": 5},
    "defaults": {"models": ["scratch"], "samplers": ["sequential"]},
    "reference": [{"model": "scratch", "sampler": "sequential", "metric": "train_ppl",
                   "low": 1.0, "high": 2, "source": "d2l", "settings": {"lr": 0.5},
                   "digits": 2, "ignore": ["epochs"]}],
    "reference_defaults": {"metric": "valid_ppl", "source": "d2l", "digits": 1,
                           "ignore": ["eval_every"]},
}
MODEL_SIZES = ("num_hiddens", "num_layers")  # an extreme one builds a huge model


@st.composite
def one_key_changed(draw: st.DrawFn) -> dict[str, Any]:
    """:data:`SOUND_TASK` with one key (at any depth) set to any TOML value, or removed."""
    path = draw(st.sampled_from(fuzzkit.json_paths(SOUND_TASK)[1:]))
    if draw(st.integers(0, 5)) == 0:
        return fuzzkit.json_delete(SOUND_TASK, path)
    value = draw(st.one_of(fuzzkit.huge, toml_values, fuzzkit.scalars.filter(
        lambda v: v is not None)))
    if path[-1] in MODEL_SIZES and path[0] == "recipe" and isinstance(value, int) \
            and not isinstance(value, bool) and value > 64:
        value = 64
    return fuzzkit.json_replace(SOUND_TASK, path, value)


@settings(max_examples=examples(250))
@given(document=one_key_changed())
@example(document=SOUND_TASK)
def test_one_key_of_a_sound_task_set_to_any_value(document: dict[str, Any],
                                                  task_dir: Path) -> None:
    """A sound task file (that plans) with one key changed: plans or is one line."""
    tried("task file: one key changed")
    try:
        text = toml_document(document)
    except ValueError:
        return
    path = task_dir / "one-key.toml"
    path.write_text(text, encoding="utf-8")
    library_call(lambda: plan_task(path, task_dir / "out"), "task file: one key changed")


# ---------------------------------------------------------------------------------------
# corpus bytes

CORPUS_TASK = ('name = "bytes"\ntokenizer = "{tokenizer}"\n[corpus]\npath = "bytes.txt"\n'
               "[recipe]\nepochs = 1\nbatch_size = 1\nnum_steps = 2\nnum_hiddens = 4\n"
               "max_tokens = 40\nvalid_tokens = {valid}\n[generate]\nprefixes = {prefixes}\n")

words = st.lists(st.sampled_from(["the", "time", " ", "\n", "\r", "\r\n", "\x85", "\u2028",
                                  "\x0c", "é", "1", "!", "\x00", "\ufeff", "THE TIME MACHINE",
                                  "t", "h", "e"]), max_size=80)
@st.composite
def damaged_corpus(draw: st.DrawFn) -> bytes:
    """The small corpus's text (a corpus that plans) with a few byte-level edits."""
    text = "\n".join(f"The Time Traveller, line {i}: a quick brown fox jumps over the lazy dog!"
                     for i in range(draw(st.integers(0, 3))))
    return draw(fuzzkit.mutated_bytes(text.encode("utf-8")))


corpus_bytes = st.one_of(
    damaged_corpus(), damaged_corpus(), damaged_corpus(),
    st.binary(max_size=300),
    st.text(fuzzkit.printable, max_size=300).map(lambda t: t.encode("utf-8")),
    words.map(lambda parts: "".join(parts).encode("utf-8")),
    words.map(lambda parts: "".join(parts).encode("utf-8")),
    words.map(lambda parts: "".join(parts).encode("utf-16")),
    st.tuples(words, st.binary(max_size=4)).map(
        lambda item: "".join(item[0]).encode("utf-8") + item[1]),
    st.sampled_from([b"", b" ", b"\n", b"\xff\xfe", b"\xef\xbb\xbf", b"a", b"\xe2\x80"]),
)


@settings(max_examples=examples(250))
@given(data=corpus_bytes, tokenizer=st.sampled_from(["char", "word"]),
       valid=st.sampled_from([0, 3, 100]), prefixes=st.sampled_from(['[]', '["the"]', '["t"]']))
@example(data=("the time machine " * 20).encode(), tokenizer="char", valid=3, prefixes='["the"]')
def test_corpus_bytes_plan_or_one_line(data: bytes, tokenizer: str, valid: int, prefixes: str,
                                       task_dir: Path) -> None:
    tried("corpus bytes: plan gate")
    (task_dir / "bytes.txt").write_bytes(data)
    path = task_dir / "bytes.toml"
    path.write_text(CORPUS_TASK.format(tokenizer=tokenizer, valid=valid, prefixes=prefixes),
                    encoding="utf-8")
    plan = library_call(lambda: plan_task(path, task_dir / "out"),
                        "corpus bytes: plan gate")
    if plan is not None:
        assert len(plan.dataset.train) > 0


def test_the_fixture_task_plans(task_dir: Path) -> None:
    """The fuzzers' starting point is sound: the small task plans."""
    path = task_dir / "plain.toml"
    path.write_text(SMALL_TASK, encoding="utf-8")
    assert plan_task(path, task_dir / "out").combinations
    try:
        plan_task(task_dir / "missing.toml", task_dir / "out")
    except HarnessError as error:
        assert "not found" in str(error)
