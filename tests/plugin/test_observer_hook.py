"""The observer plugin kind: its contract, its hook, its catalog and its listing."""

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.cli import main
from harness.errors import ConfigError
from harness.plan.track import check_track
from harness.plugin.contracts import ModelSpec, Observer, ObserverSpec
from harness.plugin.manager import AUTOLOAD_ENV, load_registry
from harness_builtins.rnn import build_scratch

from fake_plugins import make_distribution

PRINTER = """
    from harness import hookimpl
    from harness.plugin.contracts import Observer, ObserverSpec


    class Printer(Observer):
        def record(self, record, curve):
            print(record.label)


    @hookimpl
    def register_observers(register):
        register(ObserverSpec("printer", Printer, "prints each record's label"))
"""


def test_builtins_register_tensorboard_and_mlflow_observers() -> None:
    registry = load_registry(autoload=False)
    assert registry.observers.names() == ["mlflow", "tensorboard"]
    tensorboard = registry.observer("tensorboard")
    assert tensorboard.requires == ("tensorboard",)
    assert tensorboard.install == "pip install 'rnn-harness[tensorboard]'"
    assert registry.observers.providers["mlflow"].plugin == "harness_builtins.trackers"


def test_an_installed_observer_is_found_and_listed(site: Path) -> None:
    make_distribution(site, "fake-printer", "1.2", "fake_printer", PRINTER)
    registry = load_registry(autoload=True)
    assert "printer" in registry.observers.names()
    assert registry.observers.providers["printer"].distribution == "fake-printer"
    result = CliRunner().invoke(main, ["plugins"], env={AUTOLOAD_ENV: None})
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("observer  printer")]
    assert line.endswith("prints each record's label  [fake_printer; fake-printer 1.2]")
    (tensorboard,) = [line for line in result.output.splitlines()
                      if line.startswith("observer  tensorboard ")]
    assert "[harness_builtins.trackers; rnn-harness" in tensorboard


def test_the_observer_hook_refuses_specs_of_the_wrong_type() -> None:
    class Mixed:
        @hookimpl
        def register_observers(self, register):
            register(ModelSpec("model-as-observer", build_scratch))

    registry = load_registry(autoload=False, extra=[Mixed()])
    assert "model-as-observer" not in registry.observers.names()
    (failure,) = registry.failures
    assert failure.error == ("register_observers got ModelSpec 'model-as-observer', expected "
                             "an ObserverSpec")


def test_missing_names_the_modules_that_are_not_installed(monkeypatch) -> None:
    spec = ObserverSpec("x", Observer, requires=("json", "no_such_module_for_harness"))
    assert spec.missing() == ("no_such_module_for_harness",)
    monkeypatch.setitem(sys.modules, "json", None)  # as Python marks a blocked import
    assert spec.missing() == ("json", "no_such_module_for_harness")
    assert ObserverSpec("y", Observer).missing() == ()


def test_the_protocol_gives_no_op_methods_to_a_subclass() -> None:
    class Quiet(Observer):
        pass

    quiet = Quiet()
    assert isinstance(quiet, Observer)
    assert quiet.run_started(Path("."), {}) is None and quiet.run_finished("complete") is None


def test_check_track_refuses_unknown_names_and_missing_libraries(monkeypatch) -> None:
    needy = ObserverSpec("needy", Observer, requires=("no_such_module_for_harness",),
                         install="pip install 'needy[extra]'")

    class Plugin:
        @hookimpl
        def register_observers(self, register):
            register(needy)
            register(ObserverSpec("plain", Observer, requires=("no_such_module_for_harness",)))

    registry = load_registry(autoload=False, extra=[Plugin()])
    assert check_track(None, registry) == ()
    with pytest.raises(ConfigError, match=r"^unknown observer 'nope'; choose from: mlflow, "
                                          r"needy, plain, tensorboard$"):
        check_track(["nope"], registry)
    with pytest.raises(ConfigError) as info:
        check_track(["needy"], registry)
    assert str(info.value) == ("--track needy needs no_such_module_for_harness: "
                               "pip install 'needy[extra]'")
    with pytest.raises(ConfigError, match=r"^--track plain needs no_such_module_for_harness: "
                                          r"pip install no_such_module_for_harness$"):
        check_track(("plain",), registry)
    with pytest.raises(ConfigError, match="track must be a list of observer names"):
        check_track("tensorboard", registry)  # type: ignore[arg-type]
    monkeypatch.setattr(ObserverSpec, "missing", lambda self: ())
    assert check_track(["plain", "needy", "plain"], registry) == ("plain", "needy")
