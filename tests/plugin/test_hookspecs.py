"""Meta-tests: every hook is documented in the README and exercised by a test."""

import inspect
from pathlib import Path

from harness.plugin import hookspecs

REPO = Path(__file__).resolve().parents[2]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if name.startswith("register_")]


def test_every_hook_has_a_docstring_and_an_empty_body() -> None:
    assert HOOKS == ["register_models", "register_observers", "register_optimizers",
                     "register_samplers", "register_schedules"]
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and fn(register=lambda spec: None) is None


def test_every_hook_signature_appears_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in HOOKS:
        assert f"def {name}(register)" in readme, name


def test_every_hook_is_used_by_a_test() -> None:
    tests = "".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("test_*.py")
                    if p.name != "test_hookspecs.py")
    for name in HOOKS:
        assert f"def {name}(" in tests, name
