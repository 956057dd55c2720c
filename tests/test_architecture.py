"""The shape docs/explanation/architecture.md promises: stages on disk, imports that point
one way only, no import cycle, small modules, plugins sealed off from the internals, a light
front door."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harness"

STAGES = ["machine", "plugin", "data", "plan", "results", "train", "execute", "drive"]
"""The stages, bottom to top: a module may import its own stage and the ones below it."""

FOUNDATION = {"harness.errors", "harness.metrics", "harness.names", "harness.numbers",
              "harness.version"}
FRONT_DOOR = {"harness", "harness.__main__", "harness.cli", "harness.console",
              "harness.testing"}
PUBLIC = {"harness", "harness.plugin.contracts", "harness.testing"}
"""All that a plugin may import of harness."""

MAX_LINES = 400
HEAVY = ("torch", "pandas", "scipy")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    """0 for the foundation, 1 + the stage's index for a stage, the top for the front door."""
    if module in FOUNDATION:
        return 0
    if module in FRONT_DOOR:
        return len(STAGES) + 1
    stage = module.split(".")[1]
    return STAGES.index(stage) + 1


def harness_imports(path: Path) -> set[str]:
    """The harness modules ``path`` imports, anywhere but under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and ast.unparse(node.test).endswith("TYPE_CHECKING") for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "harness":
            for alias in node.names:  # "from harness.plugin import hookspecs" is a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).is_file()
                          else node.module)
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_stage_or_the_foundation_or_the_front_door() -> None:
    for name in modules():
        parts = name.split(".")
        assert name in FOUNDATION | FRONT_DOOR or (len(parts) >= 2 and parts[1] in STAGES), name


def test_imports_point_down_only() -> None:
    upward = [f"{name} imports {target}" for name, path in modules().items()
              for target in harness_imports(path)
              if target != name and rank(target) > rank(name)]
    assert upward == []


def test_there_is_no_import_cycle() -> None:
    graph = {name: {t for t in harness_imports(path) if t in modules() and t != name}
             for name, path in modules().items()}
    graph["harness"] = set()  # the front door's names are imported on first use
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_cli_uses_only_the_front_door() -> None:
    allowed = {"harness", "harness.console", "harness.errors", "harness.version"}
    assert harness_imports(PACKAGE / "cli.py") <= allowed


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_plugins_import_only_public_names() -> None:
    leaks = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        for target in harness_imports(path):
            if target not in PUBLIC:
                leaks.append(f"{path.relative_to(REPO)}: {target}")
    assert leaks == []


@pytest.mark.parametrize("code", [
    "import harness",
    "import harness.cli",
    "from harness.cli import main; main(['--help'])",
    "from harness.cli import main; main(['--version'])",
    "from harness.cli import main; main(['plugins', '--help'])",
    "from harness.cli import main; main(['run', '--help'])",
])
def test_the_front_door_imports_no_heavy_library(code: str) -> None:
    probe = (f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[-1] == "heavy:", f"{code} imported {out[-1]}"


def test_public_functions_with_more_than_three_parameters_take_keywords() -> None:
    """Beyond the first two, their parameters are keyword-only (click commands: all)."""
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            args = node.args
            positional = [a.arg for a in args.posonlyargs + args.args
                          if a.arg not in ("self", "cls")]
            total = len(positional) + len(args.kwonlyargs) + bool(args.vararg)
            if total > 3 and len(positional) > 2:
                long.append(f"{name}.{node.name}: {len(positional)} positional")
    assert long == []
