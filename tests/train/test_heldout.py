import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from harness.data.dataset import Dataset, load_dataset
from harness.data.taskfile import load_task
from harness.plan.recipe import Recipe
from harness.plugin.contracts import (ModelSettings, OptimizerSettings, OptimizerSpec,
                                      ScheduleSpec)
from harness.train.heldout import (bits, eval_cadence, score, total_steps, train_heldout)
from harness_builtins.gated import build_lstm
from harness_builtins.ngram import build_ngram
from harness_builtins.optim import OPTIMIZERS, SCHEDULES
from harness_builtins.samplers import SAMPLERS

CPU = torch.device("cpu")
SAMPLER = {s.name: s for s in SAMPLERS}
OPTIMIZER = {s.name: s for s in OPTIMIZERS}
SCHEDULE = {s.name: s for s in SCHEDULES}
RECIPE = Recipe(epochs=50, batch_size=4, num_steps=8, num_hiddens=16, lr=0.01, clip=1.0,
                optimizer="adamw", budget_tokens=640, eval_tokens=128)


class Bigram(nn.Module):
    """logits(x) = table[x]: stateless, so every token's loss is known exactly."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def begin_state(self, batch_size: int, device: torch.device) -> None:
        return None

    def forward(self, X: Tensor, state: None) -> tuple[Tensor, None]:
        return self.table[X.T.reshape(-1)], None


@pytest.fixture
def data(small_task: Path) -> Dataset:
    text = small_task.read_text().replace("[recipe]", "[splits]\ntrain = 0.8\nvalid = 0.1\n"
                                          "test = 0.1\n[recipe]")
    small_task.write_text(text)
    return load_dataset(load_task(str(small_task)), max_tokens=1, valid_tokens=1)


def test_score_gives_every_tokens_loss_in_stream_order() -> None:
    torch.manual_seed(0)
    table = torch.randn(7, 7)
    tokens = torch.randint(0, 7, (103,)).tolist()
    nll = score(Bigram(table), tokens, batch_size=4, num_steps=5, device=CPU)
    length = (len(tokens) - 1) // 4  # 25 per row, the last window 5 of 5
    assert nll.shape == (4 * length,)
    expected = [-F.log_softmax(table[tokens[i]], dim=0)[tokens[i + 1]].item()
                for i in range(4 * length)]
    assert torch.allclose(nll, torch.tensor(expected), atol=1e-6)


def test_score_covers_a_last_short_window() -> None:
    tokens = list(range(7)) * 6  # 42 tokens: rows of 10, windows 4 + 4 + 2
    nll = score(Bigram(torch.zeros(7, 7)), tokens, batch_size=4, num_steps=4, device=CPU)
    assert nll.shape == (40,) and torch.allclose(nll, torch.full((40,), math.log(7)))


def test_score_carries_the_state_along_each_row(data: Dataset) -> None:
    torch.manual_seed(0)
    model = build_lstm(len(data.vocab), ModelSettings(16), CPU)
    windows = score(model, data.valid, batch_size=2, num_steps=5, device=CPU)
    whole = score(model, data.valid, batch_size=2, num_steps=10**6, device=CPU)
    assert torch.allclose(windows, whole, atol=1e-5)


def test_each_row_reads_the_text_before_it_first(data: Dataset) -> None:
    torch.manual_seed(0)
    model = build_lstm(len(data.vocab), ModelSettings(16), CPU)
    tokens, context = data.valid, data.train
    warm = score(model, tokens, batch_size=2, num_steps=5, device=CPU, context=context,
                 warmup=12)
    length = (len(tokens) - 1) // 2
    stream = list(context) + list(tokens)
    for row in range(2):  # row r scored after reading the 12 tokens before it, in one go
        start = len(context) + row * length
        alone = score(model, stream[start - 12: start + length + 1], batch_size=1,
                      num_steps=10**6, device=CPU)
        assert torch.allclose(warm.reshape(2, length)[row], alone[12:], atol=1e-5)
    cold = score(model, tokens, batch_size=2, num_steps=5, device=CPU)
    assert not torch.allclose(warm, cold)  # the warm-up is not a no-op
    assert torch.allclose(warm.reshape(2, length)[:, 40:], cold.reshape(2, length)[:, 40:],
                          atol=1e-3)  # an LSTM forgets: far from the start it is the same


def _train(data: Dataset, recipe: Recipe = RECIPE, *, optimizer: OptimizerSpec | None = None,
           model: nn.Module | None = None, counts: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = model or build_lstm(len(data.vocab), ModelSettings(16), CPU)
    result = train_heldout(model, SAMPLER["random"], data=data, recipe=recipe,
                           optimizer=optimizer or OPTIMIZER[recipe.optimizer],
                           schedule=SCHEDULE[recipe.schedule], device=CPU,
                           rng=random.Random(seed), counts=counts)
    return model, result


def test_a_token_budget_stops_training_at_the_first_step_that_reaches_it(data: Dataset) -> None:
    _, result = _train(data)
    per_step = RECIPE.batch_size * RECIPE.num_steps
    assert result.status == "ok"
    assert [row["tokens"] for row in result.curve] == list(range(128, 641, 128))
    assert result.curve[-1]["step"] == math.ceil(640 / per_step)
    assert result.metrics["tokens_per_sec"] == pytest.approx(640 / result.train_seconds)


def test_a_step_budget_and_an_epoch_budget_stop_training_too(data: Dataset) -> None:
    _, by_steps = _train(data, replace(RECIPE, budget_tokens=0, budget_steps=7))
    assert by_steps.curve[-1]["step"] == 7
    _, by_epochs = _train(data, replace(RECIPE, budget_tokens=0, epochs=2, eval_tokens=0))
    per_epoch = len(data.train) // 32  # the random sampler's batches (4 x 8 tokens each)
    assert by_epochs.curve[-1]["epoch"] == 2
    assert by_epochs.curve[-1]["step"] in (2 * per_epoch - 2, 2 * per_epoch - 1, 2 * per_epoch)


def test_validation_scores_the_whole_split_and_the_best_state_is_the_one_tested(
        data: Dataset) -> None:
    # An optimizer that trains, then wrecks the weights after its 6th step: validation
    # gets worse, so the state kept is an earlier one.
    class Wrecking(torch.optim.AdamW):
        def step(self, closure=None):  # type: ignore[override]
            super().step(closure)
            self.count = getattr(self, "count", 0) + 1
            if self.count > 6:
                with torch.no_grad():
                    for group in self.param_groups:
                        for p in group["params"]:
                            p.add_(torch.randn_like(p))

    wrecking = OptimizerSpec("wrecking", lambda params, s: Wrecking(
        [p for _, p in params], lr=s.lr))
    model, result = _train(data, replace(RECIPE, optimizer="adamw", lr=0.02),
                           optimizer=wrecking)
    curve = [row["valid_bpc"] for row in result.curve]
    assert result.metrics["valid_bpc"] == min(curve) < curve[-1]
    # the model handed back holds the best state, and the test was scored on it
    rescored = bits(score(model, data.valid, batch_size=4, num_steps=8, device=CPU,
                          context=data.train))
    assert rescored == pytest.approx(min(curve), abs=1e-9)
    test = score(model, data.test, batch_size=4, num_steps=8, device=CPU, context=data.valid)
    assert result.metrics["test_bpc"] == pytest.approx(bits(test), abs=1e-9)
    assert torch.equal(result.test_nll, test)
    assert result.metrics["test_ppl"] == pytest.approx(math.exp(float(test.double().mean())))


def test_the_target_records_tokens_and_seconds_and_may_stop_training(data: Dataset) -> None:
    reachable = replace(RECIPE, target_metric="valid_bpc", target_value=100.0)
    _, result = _train(data, reachable)
    first = result.curve[0]
    assert result.metrics["tokens_to_target"] == first["tokens"] == 128
    assert result.metrics["seconds_to_target"] == first["seconds"]
    assert len(result.curve) == 5
    _, stopped = _train(data, replace(reachable, stop_at_target=True))
    assert len(stopped.curve) == 1
    _, never = _train(data, replace(RECIPE, target_metric="valid_ppl", target_value=1.0))
    assert never.metrics["tokens_to_target"] is None
    assert never.metrics["seconds_to_target"] is None


def test_a_count_model_is_fitted_once_and_scored_held_out(data: Dataset) -> None:
    model = build_ngram(len(data.vocab), ModelSettings(16, options={"order": 3}), CPU)
    model, result = _train(data, model=model, counts=True)
    assert result.status == "ok" and len(result.curve) == 1
    valid = bits(score(model, data.valid, batch_size=4, num_steps=8, device=CPU,
                       context=data.train))
    assert result.metrics["valid_bpc"] == pytest.approx(valid)
    assert result.metrics["train_bpc"] is None and result.metrics["test_bpc"] < math.log2(28)


def test_a_diverging_run_ends_diverged_with_its_curve(data: Dataset) -> None:
    def exploding(params, settings: OptimizerSettings) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for _, p in params], lr=1e38)

    _, result = _train(data, replace(RECIPE, clip=1e38),
                       optimizer=OptimizerSpec("boom", exploding))
    assert result.status == "diverged" and "step" in result.error
    assert result.metrics == {}


def test_the_cadence_and_the_steps_a_schedule_spans() -> None:
    assert eval_cadence(RECIPE, train_tokens=10_000, valid_tokens=10) == 128
    automatic = replace(RECIPE, eval_tokens=0, budget_tokens=1_200_000)
    assert eval_cadence(automatic, train_tokens=10, valid_tokens=17_000) == 120_000  # 10 times
    assert eval_cadence(automatic, train_tokens=10, valid_tokens=250_000) == 1_200_000  # once
    assert eval_cadence(replace(automatic, budget_tokens=4_000_000), train_tokens=10,
                        valid_tokens=250_000) == 1_000_000  # 4 = 4M / (4 x 250k)
    assert eval_cadence(replace(RECIPE, eval_tokens=0, budget_tokens=0), train_tokens=10_000,
                        valid_tokens=10) == 10_000
    assert total_steps(RECIPE, train_tokens=10_000) == 20
    assert total_steps(replace(RECIPE, budget_tokens=0, budget_steps=7),
                       train_tokens=10_000) == 7
    assert total_steps(replace(RECIPE, budget_tokens=0, epochs=3), train_tokens=3201) == 300
