"""d2l's task stays d2l's: its slices, its SGD, its training perplexity and its numbers.

The held-out machinery (splits, budgets, optimizer and schedule plugins) must not move the
d2l reproduction by a bit. Two pins: the optimizer plugin path trains bit for bit as the
trainer's own d2l SGD; and a short run of the seed's grid gives the numbers measured at
commit 4a84128, before any of it existed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import harness
from harness.data.taskfile import load_task
from harness.plan.fits import prepare, task_recipe
from harness.plugin.contracts import ScheduleSettings
from harness.train.optimizers import build_optimizer, build_scheduler
from harness.train.trainer import seed_everything, train
from harness_builtins.optim import OPTIMIZERS, SCHEDULES
from harness_builtins.rnn import build_scratch
from harness_builtins.samplers import SAMPLERS

CPU = torch.device("cpu")

PINNED = {  # (train ppl, valid ppl) after 3 epochs, measured at 4a84128
    "scratch__sequential__seed0": (22.736224871365348, 21.742033029277607),
    "scratch__sequential-reset__seed0": (22.7362465543294, 21.7420662050125),
    "nnrnn__sequential__seed0": (19.183503171233166, 18.642835286650854),
    "nnrnn__sequential-reset__seed0": (19.924817964768213, 18.397842589259092),
}


def test_the_d2l_task_keeps_its_slices_and_sgd(timemachine: Path) -> None:
    task = load_task("timemachine")
    recipe = task_recipe(task)
    assert task.splits is None and (recipe.max_tokens, recipe.valid_tokens) == (10_000, 5_000)
    assert (recipe.optimizer, recipe.schedule, recipe.weight_decay) == ("sgd", "constant", 0)
    data = prepare(task, recipe, timemachine)
    assert (len(data.train), len(data.valid), data.test) == (10_000, 5_000, [])


def test_the_sgd_plugin_trains_bit_for_bit_as_d2l_sgd(timemachine: Path) -> None:
    task = load_task("timemachine")
    recipe = task_recipe(task).with_overrides(epochs=2, num_hiddens=32, max_tokens=3000,
                                              valid_tokens=0)
    data = prepare(task, recipe, timemachine)
    sampler = {s.name: s for s in SAMPLERS}["random"]
    finals = []
    for plugin in (False, True):
        rng = seed_everything(0)
        model = build_scratch(len(data.vocab), recipe.model_settings(), CPU)
        optimizer = schedule = None
        if plugin:
            optimizer = build_optimizer(model, spec=OPTIMIZERS[0], lr=recipe.lr,
                                        weight_decay=0.0)
            schedule = build_scheduler(optimizer, spec=SCHEDULES[0],
                                       settings=ScheduleSettings(total_steps=100))
        result = train(model, sampler, data=data, recipe=recipe, device=CPU, rng=rng,
                       quiet=True, optimizer=optimizer, schedule=schedule)
        finals.append(([p.train_ppl for p in result.curve],
                       [p.detach().clone() for p in model.parameters()]))
    assert OPTIMIZERS[0].name == "sgd" and SCHEDULES[0].name == "constant"
    assert finals[0][0] == finals[1][0]
    assert all(torch.equal(a, b) for a, b in zip(finals[0][1], finals[1][1]))


def test_the_seeds_grid_gives_the_numbers_it_gave_before(timemachine: Path,
                                                         tmp_path: Path) -> None:
    result = harness.run(models=["scratch", "nnrnn"], samplers=["sequential",
                                                                "sequential-reset"],
                         corpus=timemachine, epochs=3, max_tokens=4000, valid_tokens=2000,
                         num_hiddens=64, output_dir=tmp_path, quiet=True)
    records = {r.key: r for r in harness.RunStore.open(result.path).records()}
    assert set(records) == set(PINNED)
    for key, (train_ppl, valid_ppl) in PINNED.items():
        # equal on the machine that measured them; another CPU's maths library may move
        # the last digits, never the fifth
        assert records[key].metric("train_ppl") == pytest.approx(train_ppl, rel=1e-5), key
        assert records[key].metric("valid_ppl") == pytest.approx(valid_ppl, rel=1e-5), key
