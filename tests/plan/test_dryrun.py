from pathlib import Path

import pytest
import torch
from torch import nn

from harness import hookimpl
from harness import run
from harness.plugin.contracts import ModelSettings, ModelSpec
from harness.plan.dryrun import check_model, check_models
from harness.errors import ConfigError
from helpers import make_plan
from harness.plugin.manager import load_registry
from harness_builtins.gated import MODELS as GATED
from harness_builtins.rnn import build_nnrnn, build_scratch

SETTINGS = ModelSettings(num_hiddens=16)


class Windowed(nn.Module):
    """Accepts at most 8 steps, as a model with learned positions would."""

    def begin_state(self, batch_size, device):
        return None

    def forward(self, X, state):
        if X.shape[1] > 8:
            raise ValueError("at most 8 steps")
        return X.new_zeros((X.numel(), 4), dtype=torch.float32), None


class NeedsData(Windowed):
    """Reads a value, which the meta device does not have."""

    def forward(self, X, state):
        X.sum().item()
        return super().forward(X, state)


def test_the_builtin_models_pass_at_the_recipe_size_without_allocating() -> None:
    for spec in (ModelSpec("scratch", build_scratch), ModelSpec("nnrnn", build_nnrnn),
                 *GATED):
        check_model(spec, vocab_size=28, settings=ModelSettings(num_hiddens=512),
                    batch_size=32, num_steps=35)


def test_a_factory_that_refuses_the_settings_stops_the_check() -> None:
    with pytest.raises(ConfigError, match="model 'scratch': .*cannot stack --layers 2"):
        check_model(ModelSpec("scratch", build_scratch), vocab_size=28,
                    settings=ModelSettings(num_hiddens=16, num_layers=2),
                    batch_size=2, num_steps=3)


def test_a_forward_pass_that_refuses_the_shape_stops_the_check() -> None:
    spec = ModelSpec("windowed", lambda vocab, settings, device: Windowed())
    check_model(spec, vocab_size=4, settings=SETTINGS, batch_size=2, num_steps=8)
    with pytest.raises(ConfigError, match="model 'windowed': at most 8 steps"):
        check_model(spec, vocab_size=4, settings=SETTINGS, batch_size=2, num_steps=9)


def test_what_cannot_run_without_data_is_left_to_the_run() -> None:
    spec = ModelSpec("needs-data", lambda vocab, settings, device: NeedsData())
    # no error: not checkable
    check_model(spec, vocab_size=4, settings=SETTINGS, batch_size=2, num_steps=9)


class WindowedPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec("windowed", lambda vocab, settings, device: Windowed()))


def test_a_plans_models_are_checked_at_each_point_and_the_error_names_it(
        small_task: Path) -> None:
    registry = load_registry(autoload=False, extra=[WindowedPlugin()])
    with pytest.raises(ConfigError, match="^model 'scratch': .*--layers 2"):
        make_plan(registry, ["nnrnn", "scratch"], ["sequential"], [0], str(small_task),
                  {"num_layers": 2})
    plan = make_plan(registry, ["nnrnn"], ["sequential"], [0], str(small_task),
                     {"num_layers": 2})
    check_models(plan, registry)
    with pytest.raises(ConfigError, match=r"^--set num_steps=9: model 'windowed': at most 8"):
        make_plan(registry, ["windowed"], ["sequential"], [0], str(small_task),
                  grid={"steps": [4, 9]})


def test_a_serial_run_stops_before_its_run_directory_exists(small_task: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model 'scratch'"):
        run(models=["nnrnn", "scratch"], samplers=["sequential"], task=str(small_task),
            output_dir=tmp_path / "out", quiet=True, num_layers=2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
