"""Plugin discovery through real entry points of fake distributions made in tmp_path."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.plugin.contracts import ModelSpec, OptimizerSpec, SamplerSpec, ScheduleSpec
from harness.cli import main
from harness.errors import ConfigError
from harness.plugin.manager import AUTOLOAD_ENV, BUILTIN_PLUGINS, autoload_enabled, load_registry
from harness_builtins.optim import build_sgd, constant
from harness_builtins.rnn import build_scratch
from harness_builtins.samplers import seq_data_iter_sequential

from fake_plugins import make_distribution

GOOD = """
    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec
    from harness_builtins.rnn import build_scratch

    @hookimpl
    def register_models(register):
        register(ModelSpec("tiny", build_scratch, "a tiny test model"))
"""


def test_builtins_load_without_autoload() -> None:
    registry = load_registry(autoload=False)
    assert {"scratch", "nnrnn"} <= set(registry.models.names())
    assert {"sequential", "random", "sequential-reset"} <= set(registry.samplers.names())
    assert {"sgd", "adam", "adamw"} <= set(registry.optimizers.names())
    assert {"constant", "cosine", "step"} <= set(registry.schedules.names())
    assert [p.plugin for p in registry.plugins] == list(BUILTIN_PLUGINS)
    assert registry.models.providers["scratch"].distribution == "rnn-harness"
    assert not registry.failures


def test_installed_plugin_is_discovered_with_its_distribution(site: Path) -> None:
    make_distribution(site, "fake-good", "1.2.3", "fake_good", GOOD)
    registry = load_registry(autoload=True)
    provider = registry.models.providers["tiny"]
    assert (provider.plugin, provider.distribution, provider.version) == (
        "fake_good", "fake-good", "1.2.3")
    assert registry.model("tiny").description == "a tiny test model"


def test_autoload_env_turns_installed_plugins_off(site: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "fake-good", "1.0", "fake_good", GOOD)
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert not autoload_enabled()
    assert "tiny" not in load_registry().models.names()
    monkeypatch.delenv(AUTOLOAD_ENV)
    assert "tiny" in load_registry().models.names()


def test_plugin_that_fails_to_import_is_reported_and_others_load(site: Path) -> None:
    make_distribution(site, "fake-broken", "0.1", "fake_broken", "raise ImportError('boom')\n")
    make_distribution(site, "fake-good", "1.0", "fake_good", GOOD)
    registry = load_registry(autoload=True)
    assert "tiny" in registry.models.names() and "scratch" in registry.models.names()
    (failure,) = registry.failures
    assert (failure.plugin, failure.distribution, failure.version) == (
        "fake_broken", "fake-broken", "0.1")
    assert "ImportError: boom" in failure.error
    with pytest.raises(ConfigError, match="fake-broken"):
        registry.model("from-broken")


def test_hookimpl_matching_no_spec_is_reported(site: Path) -> None:
    make_distribution(site, "fake-typo", "0.1", "fake_typo", """
        from harness import hookimpl

        @hookimpl
        def register_modles(register):
            pass
    """)
    registry = load_registry(autoload=True)
    (failure,) = registry.failures
    assert failure.distribution == "fake-typo" and "register_modles" in failure.error
    assert "scratch" in registry.models.names()


def test_duplicate_names_are_an_error_naming_both_when_selected(site: Path) -> None:
    make_distribution(site, "fake-dup", "2.0", "fake_dup", """
        from harness import hookimpl
        from harness.plugin.contracts import ModelSpec
        from harness_builtins.rnn import build_scratch

        @hookimpl
        def register_models(register):
            register(ModelSpec("scratch", build_scratch))
            register(ModelSpec("dup-only", build_scratch))
    """)
    registry = load_registry(autoload=True)
    assert registry.model("dup-only")  # the plugin's other names stay usable
    with pytest.raises(ConfigError) as info:
        registry.model("scratch")
    message = str(info.value)
    assert "'harness_builtins.rnn' (rnn-harness" in message
    assert "'fake_dup' (fake-dup 2.0)" in message


class InProcess:
    """A plugin object registered for one test only (nothing global to unregister)."""

    @hookimpl
    def register_models(self, register):
        register(ModelSpec("in-process", build_scratch))

    @hookimpl
    def register_samplers(self, register):
        register(SamplerSpec("plain", seq_data_iter_sequential, carries_state=True))


def test_extra_plugin_objects_register_through_the_same_path() -> None:
    registry = load_registry(autoload=False, extra=[InProcess()])
    assert registry.model("in-process") and registry.sampler("plain")
    assert "in-process" not in load_registry(autoload=False).models.names()


def test_plugin_whose_hook_raises_is_reported() -> None:
    class Raises:
        @hookimpl
        def register_models(self, register):
            raise RuntimeError("cannot register")

    registry = load_registry(autoload=False, extra=[Raises()])
    assert any("cannot register" in f.error for f in registry.failures)
    assert "scratch" in registry.models.names()


def test_plugin_calling_sys_exit_is_reported_and_others_load(site: Path) -> None:
    make_distribution(site, "fake-exit", "0.1", "fake_exit", "import sys\nsys.exit('bye')\n")
    make_distribution(site, "fake-good", "1.0", "fake_good", GOOD)

    class ExitsInHook:
        @hookimpl
        def register_samplers(self, register):
            raise SystemExit("hook bye")

    registry = load_registry(autoload=True, extra=[ExitsInHook()])
    assert "tiny" in registry.models.names() and "sequential" in registry.samplers.names()
    errors = {f.plugin: f.error for f in registry.failures}
    assert errors["fake_exit"] == "SystemExit: bye"
    assert errors["ExitsInHook-0"] == "SystemExit: hook bye"


def test_keyboard_interrupt_in_a_plugin_still_stops_loading(site: Path) -> None:
    make_distribution(site, "fake-ctrlc", "0.1", "fake_ctrlc", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_registry(autoload=True)


def test_spec_of_the_wrong_type_is_refused_as_the_plugins_failure() -> None:
    class Mixed:
        @hookimpl
        def register_samplers(self, register):
            register(ModelSpec("model-as-sampler", build_scratch))
            register(SamplerSpec("plain", seq_data_iter_sequential, carries_state=True))

    registry = load_registry(autoload=False, extra=[Mixed()])
    assert "model-as-sampler" not in registry.samplers.names()
    assert registry.sampler("plain")  # the plugin's well-typed registrations stay usable
    (failure,) = registry.failures
    assert failure.plugin == "Mixed-0" and failure.error == (
        "register_samplers got ModelSpec 'model-as-sampler', expected a SamplerSpec")


OPTIM = """
    import torch

    from harness import hookimpl
    from harness.plugin.contracts import OptimizerSpec, ScheduleSpec

    def build_plain(params, settings):
        return torch.optim.SGD([p for _, p in params], lr=settings.lr)

    @hookimpl
    def register_optimizers(register):
        register(OptimizerSpec("plain-sgd", build_plain, "an installed optimizer",
                               takes_weight_decay=False))
        register(OptimizerSpec("adamw", build_plain))

    @hookimpl
    def register_schedules(register):
        register(ScheduleSpec("halving", lambda step, settings: 0.5 ** step, "halves"))
"""


def test_installed_optimizers_and_schedules_register_like_models(site: Path) -> None:
    make_distribution(site, "fake-optim", "0.3", "fake_optim", OPTIM)
    registry = load_registry(autoload=True)
    assert not registry.failures
    assert registry.optimizer("plain-sgd").takes_weight_decay is False
    assert registry.schedule("halving").factor(2, None) == 0.25
    provider = registry.schedules.providers["halving"]
    assert (provider.plugin, provider.distribution, provider.version) == (
        "fake_optim", "fake-optim", "0.3")
    assert "plain-sgd" not in load_registry(autoload=False).optimizers.names()


def test_duplicate_optimizer_name_is_a_conflict_naming_both(site: Path) -> None:
    make_distribution(site, "fake-optim", "0.3", "fake_optim", OPTIM)
    registry = load_registry(autoload=True)
    assert registry.optimizer("plain-sgd")  # the plugin's other names stay usable
    with pytest.raises(ConfigError) as info:
        registry.optimizer("adamw")
    message = str(info.value)
    assert message.startswith("optimizer 'adamw' is registered twice")
    assert "'harness_builtins.optim' (rnn-harness" in message
    assert "'fake_optim' (fake-optim 0.3)" in message


def test_plugins_command_lists_optimizers_and_schedules(site: Path) -> None:
    make_distribution(site, "fake-optim", "0.3", "fake_optim", OPTIM)
    result = CliRunner().invoke(main, ["plugins"], env={AUTOLOAD_ENV: None})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (plain,) = [line for line in lines if line.startswith("optimizer plain-sgd ")]
    assert "an installed optimizer  [fake_optim; fake-optim 0.3]" in plain
    (halving,) = [line for line in lines if line.startswith("schedule  halving ")]
    assert "halves  [fake_optim; fake-optim 0.3]" in halving
    (cosine,) = [line for line in lines if line.startswith("schedule  cosine ")]
    assert "[harness_builtins.optim; rnn-harness" in cosine
    assert any(line.startswith("optimizer sgd ") for line in lines)
    (conflict,) = [line for line in lines if line.startswith("conflict:")]
    assert "optimizer 'adamw' is registered twice" in conflict


def test_optimizer_and_schedule_hooks_refuse_specs_of_the_wrong_type() -> None:
    class Mixed:
        @hookimpl
        def register_optimizers(self, register):
            register(ScheduleSpec("schedule-as-optimizer", constant))
            register(OptimizerSpec("in-process-sgd", build_sgd))

        @hookimpl
        def register_schedules(self, register):
            register(OptimizerSpec("optimizer-as-schedule", build_sgd))
            register(ScheduleSpec("in-process-constant", constant))

    registry = load_registry(autoload=False, extra=[Mixed()])
    assert registry.optimizer("in-process-sgd") and registry.schedule("in-process-constant")
    assert "schedule-as-optimizer" not in registry.optimizers.names()
    assert "optimizer-as-schedule" not in registry.schedules.names()
    assert sorted(f.error for f in registry.failures) == [
        "register_optimizers got ScheduleSpec 'schedule-as-optimizer', expected an "
        "OptimizerSpec",
        "register_schedules got OptimizerSpec 'optimizer-as-schedule', expected a ScheduleSpec",
    ]
