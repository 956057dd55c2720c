from pathlib import Path

import pytest

from harness.data.taskfile import load_task
from harness.errors import ConfigError
from harness.plan import plan as plan_module
from harness.plan.fits import prepare, task_recipe
from harness.plan.plan import Combination, build_plan
from harness.plan.recipe import Recipe
from harness.plugin.manager import load_registry


def test_the_task_recipe_is_the_defaults_changed_by_the_task_file(small_task: Path) -> None:
    recipe = task_recipe(load_task(str(small_task)))
    assert (recipe.batch_size, recipe.num_hiddens, recipe.lr) == (4, 16, Recipe().lr)
    assert task_recipe(load_task("timemachine")) == Recipe()  # the seed's recipe


@pytest.mark.parametrize("text,match", [
    ("[recipe]\nepoch = 3\n", r"\[recipe\] unknown recipe setting\(s\): epoch"),
    ("[recipe]\ndropout = 'x'\n", r"\[recipe\] dropout must be"),
    ("[recipe]\nlr = true\n", r"\[recipe\] lr must be a finite"),
    ("[recipe]\nclip = true\n", r"\[recipe\] clip must be"),
    ("[recipe]\nepochs = 0\n", r"\[recipe\] epochs must be"),
    ("[[reference]]\nmodel = 'm'\nsampler = 's'\nmetric = 'train_ppl'\nlow = 1\nhigh = 2\n"
     "source = 's'\nsettings = { num_hidden = 256 }\n",
     r"\[\[reference\]\] #1 settings: unknown recipe setting\(s\): num_hidden"),
    ("[[reference]]\nmodel = 'm'\nsampler = 's'\nmetric = 'train_ppl'\nlow = 1\nhigh = 2\n"
     "source = 's'\nsettings = { lr = -1 }\n", r"\[\[reference\]\] #1 settings: lr must be"),
    ("[[reference]]\nmodel = 'm'\nsampler = 's'\nmetric = 'train_ppl'\nlow = 1\nhigh = 2\n"
     "source = 's'\nignore = ['precison']\n",
     r"\[\[reference\]\] #1 ignore names unknown recipe setting\(s\) precison"),
])
def test_a_bad_recipe_in_a_task_file_names_the_file(tmp_path: Path, text: str,
                                                    match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[corpus]\npath = 'a'\nsha1 = '" + "a" * 40 + "'\n" + text)
    with pytest.raises(ConfigError, match=rf"^task {path}: {match}"):
        task_recipe(load_task(str(path)))


def test_a_bad_task_recipe_is_refused_before_any_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "remote.toml"
    path.write_text("name = 'x'\n[corpus]\nurl = 'http://127.0.0.1:9/x.txt'\n"
                    "[recipe]\nepochs = 0\n")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("the corpus was fetched before the recipe was checked")

    monkeypatch.setattr(plan_module, "load_dataset", no_download)
    with pytest.raises(ConfigError, match=rf"^task {path}: \[recipe\] epochs must be"):
        build_plan(load_registry(), (Combination("scratch", "sequential", 0),), task=str(path))


def test_task_split_and_fit(small_task: Path) -> None:
    task = load_task(str(small_task))
    data = prepare(task, task_recipe(task))
    assert len(data.train) == 1500 and len(data.valid) == 300


def test_corpus_too_small_for_one_minibatch(small_task: Path) -> None:
    task = load_task(str(small_task))
    recipe = task_recipe(task)
    with pytest.raises(ConfigError, match="needs at least"):
        prepare(task, recipe.with_overrides(batch_size=400))
    with pytest.raises(ConfigError, match="validation"):
        prepare(task, recipe.with_overrides(max_tokens=2800, valid_tokens=300))


def test_validation_too_short_says_which_setting_fixes_it(small_task: Path) -> None:
    task = load_task(str(small_task))  # batch 4 x steps 5: validation needs 21 tokens
    recipe = task_recipe(task)
    with pytest.raises(ConfigError, match=r"--valid-tokens is 10: raise --valid-tokens to at "
                       r"least 21, lower --batch-size or --steps, or set --valid-tokens 0$"):
        prepare(task, recipe.with_overrides(valid_tokens=10))
    # When the corpus ends first, more --valid-tokens cannot help: fewer training tokens can.
    corpus_tokens = len(prepare(task, recipe.with_overrides(max_tokens=10**6,
                                                             valid_tokens=0)).train)
    with pytest.raises(ConfigError, match=rf"only 10 tokens after the {corpus_tokens - 10} "
                       rf"training tokens: lower --max-tokens to at most {corpus_tokens - 21},"):
        prepare(task, recipe.with_overrides(max_tokens=corpus_tokens - 10))
