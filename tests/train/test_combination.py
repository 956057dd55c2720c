"""Running one combination: the thread check that comes before lending or --reproducible.
The models are the slow fake plugin's: ``slow-scratch`` (clean at the small task's shapes)
and ``slow-threaded`` (its output weights' gradient scaled by the thread count)."""

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import make_plan
from harness.plugin.manager import load_registry
from harness.machine.determinism import VARIABLE
from harness.results.efficiency import interval_rates, throughput_spread
from harness.train.combination import lost_outcome, run_combination, throughput_noise
from harness.results.store import RunStore

from fake_plugins import SLOW_SCRATCH, make_distribution


@pytest.fixture
def slow_registry(site: Path):
    make_distribution(site, "fake-slow", "0.1", "fake_slow", SLOW_SCRATCH.format(delay=0))
    return load_registry(autoload=True)


def train(registry, task: Path, model: str, lend: bool,
          reproducible: bool = False) -> tuple[dict, list[int]]:
    """One combination of ``model`` for 2 epochs; the record, and the thread counts a
    worker would have been offered lent cores at (empty when it was offered none).
    ``reproducible``: a ``--reproducible`` run's plan (the gate would also set oneMKL's
    strict mode, which this process, having made matrix products, could no longer take)."""
    plan = make_plan(registry, [model], ["sequential"], [0], str(task), {"epochs": 2},
                     device="cpu")
    if reproducible:
        plan = replace(plan, reproducible=True)
    offers: list[int] = []
    outcome = run_combination(plan, plan.combinations[0], registry=registry, quiet=True,
                              take_lent_threads=(lambda: offers.append(1)) if lend else None)
    assert outcome.record.status == "ok", outcome.traceback
    return outcome.record, offers


@pytest.mark.parametrize("model, lent", [("slow-scratch", True), ("slow-threaded", False)])
def test_a_combination_is_lent_threads_only_if_its_model_passes_the_check(
        model: str, lent: bool, slow_registry, small_task: Path, monkeypatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    record, offers = train(slow_registry, small_task, model, lend=True)
    assert offers == ([1, 1] if lent else [])  # before each of the 2 epochs, or never
    warning = capsys.readouterr().err
    if lent:
        assert not record.thread_dependent_parameters and "warning" not in warning
    else:
        assert record.thread_dependent_parameters == ("W_hq",)
        assert "W_hq depend on the thread count" in warning and "lent no cores" in warning


def test_reproducible_mode_checks_every_combination_lent_or_not(
        slow_registry, small_task: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(VARIABLE, "AUTO,STRICT")  # as harness run --reproducible sets it
    threaded, _ = train(slow_registry, small_task, "slow-threaded", lend=False,
                        reproducible=True)
    clean, _ = train(slow_registry, small_task, "slow-scratch", lend=False, reproducible=True)
    assert threaded.thread_dependent_parameters == ("W_hq",)
    assert not clean.thread_dependent_parameters
    warning = capsys.readouterr().err
    assert "even in --reproducible mode" in warning and "lent" not in warning
    monkeypatch.delenv(VARIABLE)
    unchecked, _ = train(slow_registry, small_task, "slow-threaded", lend=False)
    assert not unchecked.thread_dependent_parameters  # the default mode promises none


def test_the_check_leaves_the_combinations_numbers_as_they_were(
        slow_registry, small_task: Path, monkeypatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the check runs on 2 and must give the 1 back
        checked, offers = train(slow_registry, small_task, "slow-scratch", lend=True)
        plain, _ = train(slow_registry, small_task, "slow-scratch", lend=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert offers == [1, 1]
    for name in ("train_ppl", "valid_ppl"):
        assert checked.metric(name) == plain.metric(name)
    assert (checked.generated, checked.torch_threads) == (plain.generated, plain.torch_threads)


def test_a_checkpoint_that_cannot_be_saved_fails_its_combination_not_the_run(
        small_task: Path, tmp_path: Path) -> None:
    import threading

    from harness import hookimpl
    from harness import run
    from harness_builtins.rnn import build_scratch

    class Unsaveable:
        @hookimpl
        def register_models(self, register):
            def factory(vocab, settings, device):
                model = build_scratch(vocab, settings, device)
                lock = threading.Lock()  # extra state torch.save cannot pickle
                model.__class__ = type("Unsaveable", (type(model),), {
                    "get_extra_state": lambda self: {"lock": lock},
                    "set_extra_state": lambda self, state: None})
                return model
            from harness.plugin.contracts import ModelSpec
            register(ModelSpec("unsaveable", factory))

    result = run(models=["unsaveable", "scratch"], samplers=["sequential"],
                 task=str(small_task), output_dir=tmp_path, quiet=True, epochs=1,
                 save_checkpoints=True, device="cpu",
                 registry=load_registry(autoload=False, extra=[Unsaveable()]))
    records = {r.model: r for r in RunStore.open(result.path).records()}
    assert records["scratch"].status == "ok" and records["scratch"].checkpoint
    broken = records["unsaveable"]
    assert broken.status == "failed" and "saving its checkpoint failed" in broken.error
    assert broken.metric("train_ppl") is None  # as for every failed combination
    assert len(RunStore.open(result.path).curve(broken.key)) == 1  # its one epoch
    assert result.status == "partial"



def test_a_lost_combination_started_when_its_time_began(small_task: Path) -> None:
    from datetime import datetime

    plan = make_plan(load_registry(), ["scratch"], ["sequential"], [0], str(small_task))
    record = lost_outcome(plan.combinations[0], status="timeout", error="ran too long",
                          wall_seconds=90.0).record
    started, finished = (datetime.fromisoformat(getattr(record, k))
                         for k in ("started", "finished"))
    assert (finished - started).total_seconds() == pytest.approx(90.0, abs=1.0)


def test_each_seed_trains_from_its_own_seed_so_repeats_are_not_copies(small_task: Path) -> None:
    from harness.train.combination import build_model
    from harness.train.trainer import seed_everything, train as train_model

    registry = load_registry()
    plan = make_plan(registry, ["scratch"], ["random"], [0, 1], str(small_task),
                     {"epochs": 2}, device="cpu")
    records = {c.seed: run_combination(plan, c, registry=registry, quiet=True).record
               for c in plan.combinations}
    assert all(r.status == "ok" for r in records.values())
    assert records[0].metric("train_ppl") != records[1].metric("train_ppl")
    # seed 1's numbers are those of training seeded with 1, by hand
    combo = plan.combinations[1]
    assert combo.seed == 1
    rng = seed_everything(1)
    by_hand = train_model(build_model(plan, combo, registry), registry.sampler("random"),
                          data=plan.dataset, recipe=plan.recipe_for(combo), device=plan.device,
                          rng=rng, prefixes=plan.task.prefixes, num_preds=plan.task.num_preds,
                          quiet=True)
    assert records[1].metric("train_ppl") == by_hand.train_ppl
    assert records[1].metric("valid_ppl") == by_hand.valid_ppl
    assert records[1].generated == by_hand.generated


def heldout_task(small_task: Path) -> Path:
    """The small task with train/valid/test splits (a held-out task)."""
    small_task.write_text(small_task.read_text().replace(
        "[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\ntest = 0.1\n[recipe]"))
    return small_task


@pytest.mark.parametrize("heldout", [False, True], ids=["d2l-task", "held-out"])
@pytest.mark.parametrize("model, sampler", [("scratch", "random"), ("gru", "sequential")])
def test_a_record_keeps_its_model_s_declared_flops_and_its_throughput_noise(
        small_task: Path, heldout: bool, model: str, sampler: str) -> None:
    from harness.plugin.contracts import Workload

    registry = load_registry()
    task = heldout_task(small_task) if heldout else small_task
    recipe = {"epochs": 3, **({"eval_tokens": 100} if heldout else {})}
    plan = make_plan(registry, [model], [sampler], [0], str(task), recipe, device="cpu")
    combo = plan.combinations[0]
    outcome = run_combination(plan, combo, registry=registry, quiet=True)
    record = outcome.record
    assert record.status == "ok", outcome.traceback
    settings = plan.recipe_for(combo).model_settings()
    V, H = len(plan.dataset.vocab), settings.num_hiddens
    work = Workload(V, settings, plan.recipe_for(combo).num_steps, sampler == "sequential")
    assert record.extra["flops_per_token"] == registry.model(model).flops_per_token(work)
    gates = 1 if model == "scratch" else 3
    assert record.extra["flops_per_token"] == 6 * (gates * (V * H + H * H) + H * V)
    assert record.extra["cpu_count"] == os.cpu_count()
    loads = [row["load"] for row in outcome.curve]
    assert len(loads) >= 3 and record.extra["max_load"] == max(loads)  # Linux keeps one
    if heldout:
        rates, threads = interval_rates(outcome.curve)
    else:
        rates, threads = [row["tokens_per_sec"] for row in outcome.curve], \
            [row["threads"] for row in outcome.curve]
    assert record.extra["throughput_spread"] == throughput_spread(rates, threads)
    assert record.extra["throughput_spread"] >= 1.0


def test_a_count_model_declares_no_flops(small_task: Path) -> None:
    registry = load_registry()
    plan = make_plan(registry, ["ngram"], ["sequential"], [0], str(heldout_task(small_task)),
                     device="cpu")
    outcome = run_combination(plan, plan.combinations[0], registry=registry, quiet=True)
    assert outcome.record.status == "ok", outcome.traceback
    assert outcome.record.extra["flops_per_token"] is None
    assert outcome.record.extra["throughput_spread"] is None  # one fit: no intervals


@pytest.mark.parametrize("declared", [-1.0, float("nan"), "many", True])
def test_a_declaration_that_is_not_a_number_fails_its_combination(
        small_task: Path, declared: object) -> None:
    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec
    from harness_builtins.rnn import build_scratch

    class Odd:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("odd", build_scratch, flops_per_token=lambda work: declared))

    registry = load_registry(autoload=False, extra=[Odd()])
    plan = make_plan(registry, ["odd"], ["random"], [0], str(small_task), {"epochs": 1},
                     device="cpu")
    record = run_combination(plan, plan.combinations[0], registry=registry, quiet=True).record
    assert record.status == "failed"
    assert "flops_per_token must give a finite number >= 0" in record.error


def test_throughput_noise_is_the_spread_the_highest_load_and_the_cores() -> None:
    noise = throughput_noise([1.0, 100.0, 200.0], [2, 2, 2], [0.5, None, 3.25, 1.0])
    assert noise == {"throughput_spread": pytest.approx(190 / 110), "max_load": 3.25,
                     "cpu_count": os.cpu_count()}
    assert throughput_noise([], [], [None])["max_load"] is None
