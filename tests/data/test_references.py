from harness.data.references import D2L, TIMEMACHINE_SHA1, Published, lookup, rounded
from harness.plan.recipe import Recipe

SEED_RECIPE = Recipe().to_dict()  # d2l's §8.5 recipe: 512 hidden, lr 1, 500 epochs


def test_the_seed_recipe_finds_d2l_8_5_numbers() -> None:
    sequential = lookup("scratch", "sequential", "timemachine", TIMEMACHINE_SHA1, SEED_RECIPE)
    reset = lookup("scratch", "sequential-reset", "timemachine", TIMEMACHINE_SHA1, SEED_RECIPE)
    assert (sequential.low, sequential.high) == (1.0, 1.2) and "8.5" in sequential.source
    assert (reset.low, reset.high) == (1.3, 1.5)


def test_chapter_9_rows_are_keyed_by_their_own_settings() -> None:
    small = {**SEED_RECIPE, "num_hiddens": 256}
    deep = {**small, "num_layers": 2, "lr": 2.0}
    assert lookup("gru", "sequential", "timemachine", TIMEMACHINE_SHA1,
                  small).text() == "1.0 to 1.1"
    assert lookup("scratch-lstm", "sequential", "timemachine", TIMEMACHINE_SHA1,
                  small).text() == "1.3"
    assert lookup("lstm", "sequential", "timemachine", TIMEMACHINE_SHA1, deep).text() == "1.0"
    assert lookup("lstm", "sequential", "timemachine", TIMEMACHINE_SHA1, small).text() == \
        "1.1 to 1.2"


def test_any_other_setting_has_no_published_number() -> None:
    args = ("scratch", "sequential", "timemachine", TIMEMACHINE_SHA1)
    assert lookup(*args, {**SEED_RECIPE, "epochs": 50}) is None
    assert lookup(*args, {**SEED_RECIPE, "num_hiddens": 256}) is None
    assert lookup("scratch", "random", "timemachine", TIMEMACHINE_SHA1, SEED_RECIPE) is None
    assert lookup("scratch", "sequential", "mytext", TIMEMACHINE_SHA1, SEED_RECIPE) is None
    assert lookup("scratch", "sequential", "timemachine", "0" * 40, SEED_RECIPE) is None
    assert lookup(*args, {"lr": 1.0}) is None  # an incomplete recipe matches nothing


def test_ours_is_rounded_to_one_decimal_before_the_range_check() -> None:
    published = Published(1.0, 1.2, "d2l")
    assert rounded(1.2499) == 1.2 and published.contains(1.2499)
    assert not published.contains(1.26)  # prints as 1.3
    assert published.contains(0.96) and not published.contains(0.94)
    assert Published(1.1, 1.1, "x").contains(1.149)


def test_every_row_is_for_500_epochs_of_d2l_time_machine() -> None:
    for key in D2L:
        assert (key.epochs, key.batch_size, key.num_steps, key.max_tokens) == (500, 32, 35, 10_000)
        assert (key.task, key.corpus_sha1, key.clip, key.dropout) == (
            "timemachine", TIMEMACHINE_SHA1, 1.0, 0.0)
