"""Every built-in model and sampler keeps the plugin contract, as harness.testing checks it
for any plugin."""

import pytest

from harness import load_registry
from harness.plugin.contracts import ModelSettings
from harness.testing import (TINY_PREFIX, brief_training, check_model_spec,
                             check_sampler_spec, tiny_dataset, tiny_model)

REGISTRY = load_registry(autoload=False)
MODELS = REGISTRY.models.names()
GRADIENT_MODELS = [n for n in MODELS if REGISTRY.model(n).trained_by == "gradient"]
"""Models the trainer's optimizer trains (the count models' contract is tested with them:
tests/builtins/test_ngram.py)."""
SAMPLERS = REGISTRY.samplers.names()


def test_the_builtins_are_all_here() -> None:
    assert set(MODELS) == {"scratch", "nnrnn", "scratch-gru", "scratch-lstm", "gru", "lstm",
                           "ngram"}
    assert set(MODELS) - set(GRADIENT_MODELS) == {"ngram"}
    assert set(SAMPLERS) == {"sequential", "random", "sequential-reset"}


@pytest.mark.parametrize("name", GRADIENT_MODELS)
@pytest.mark.parametrize("settings", [
    ModelSettings(16), ModelSettings(16, reproducible=True), ModelSettings(16, 2, 0.2),
], ids=["default", "reproducible", "2-layers-dropout"])
def test_every_builtin_model_keeps_the_model_contract(name: str, settings: ModelSettings
                                                      ) -> None:
    # batch 16: two row blocks for scratch's recurrence on 2 threads, unless reproducible
    checked = check_model_spec(REGISTRY.model(name), settings=settings, batch_size=16)
    assert checked is not (name == "scratch" and settings.num_layers == 2)  # d2l's 1 layer


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_builtin_sampler_keeps_the_sampler_contract(name: str) -> None:
    check_sampler_spec(REGISTRY.sampler(name))
    check_sampler_spec(REGISTRY.sampler(name), batch_size=3, num_steps=7, corpus_length=200,
                       seed=5)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_every_builtin_model_learns_in_a_brief_training(name: str) -> None:
    dataset = tiny_dataset()
    result = brief_training(model=tiny_model(REGISTRY.model(name), dataset=dataset),
                            sampler=REGISTRY.sampler("sequential"), dataset=dataset)
    assert result.status == "ok", result.error
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl
    assert result.generated[TINY_PREFIX].startswith(TINY_PREFIX)
