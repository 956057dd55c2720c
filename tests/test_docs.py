"""The docs cover the whole surface a user touches, and the site builds without a warning.

What counts as documented:

- a hook (every hook specification in ``harness/plugin/hookspecs.py``): a row of the
  *Hooks* table in ``docs/reference/plugins.md`` (``| `name(register)` | what | ... |``,
  no cell empty), and a docstring, which the page's ``::: harness.plugin.hookspecs``
  renders;
- a CLI option (every option of every command and group under ``harness.cli.main``, walked
  from the click objects): non-empty help text on one line without a ``|``, since
  ``docs/reference/cli.md`` is generated from the commands by mkdocs-click and shows the
  help in a table; where mkdocs-click is installed, its generated Markdown holds a row for
  the option with that help;
- a task-file key (every key ``harness.data.taskfile`` and the modules it hands tables to
  accept, table by table): a row ``| `key` | ... | meaning |`` with a non-empty meaning in
  that table's section of ``docs/reference/task-file.md``, and no row for a key that does
  not exist.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from harness.cli import main
from harness.data import published, references, splits, taskfile
from harness.plan.recipe import Recipe
from harness.plugin import hookspecs

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CLI_PAGE = DOCS / "reference" / "cli.md"
PLUGIN_PAGE = DOCS / "reference" / "plugins.md"
TASK_PAGE = DOCS / "reference" / "task-file.md"
ROW = re.compile(r"^\|\s*`(?P<name>[^`(]+)(?:\([^`]*\))?`\s*\|(?P<rest>.*)\|\s*$")
"""A Markdown table row whose first cell is a name in backticks (``name(...)`` too)."""


def hooks() -> list[str]:
    """Every hook specification: the functions pluggy's marker flagged in hookspecs."""
    mark = f"{hookspecs.hookspec.project_name}_spec"
    return sorted(name for name, value in vars(hookspecs).items()
                  if inspect.isfunction(value) and hasattr(value, mark))


def sections(page: Path) -> dict[str, str]:
    """A page's ``## `` sections by heading (attribute lists such as ``{ #id }`` dropped)."""
    found: dict[str, str] = {}
    heading = ""
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = re.sub(r"\s*\{[^}]*\}\s*$", "", line[3:]).strip()
            found[heading] = ""
        elif heading:
            found[heading] += line + "\n"
    return found


def documented_rows(text: str) -> dict[str, list[str]]:
    """Name -> the other cells of each table row naming it in its first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["name"]] = [c.strip() for c in match["rest"].split("|")]
    return rows


def task_file_tables() -> dict[str, tuple[str, ...]]:
    """Every table of a task file with the keys it accepts. Read from the code: each
    ``reader.keys(where, table, allowed)`` call in harness/data/taskfile.py (its ``where``
    names the table, ``""`` the top level), then the tables other modules check."""
    tables: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(taskfile))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "keys" and len(node.args) == 3):
            where, allowed = ast.literal_eval(node.args[0]).strip(), node.args[2]
            keys = (getattr(taskfile, allowed.id) if isinstance(allowed, ast.Name)
                    else ast.literal_eval(allowed))
            tables[where or "top level"] = tuple(keys)
    tables["[splits]"] = splits.PARTS
    tables["[[reference]]"] = references.ENTRY_KEYS
    tables["[[published]]"] = published.KEYS
    # [recipe] takes recipe fields; a model's own settings go by --set, not in the file
    tables["[recipe]"] = tuple(f.name for f in dataclasses.fields(Recipe)
                               if f.name != "model_options")
    return tables


def commands(command: click.Command = main,
             path: tuple[str, ...] = ("harness",)) -> Iterator[tuple[str, click.Command]]:
    """Every command and group under ``main``, hidden ones included, with its path."""
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def options(command: click.Command, path: str) -> list[click.Option]:
    """The command's options as its help shows them, ``--help`` included."""
    ctx = click.Context(command, info_name=path)
    return [p for p in command.get_params(ctx) if isinstance(p, click.Option)]


# --- hooks --------------------------------------------------------------------------------

def test_every_hook_has_a_row_in_the_plugin_reference() -> None:
    assert "register_models" in hooks()  # the walk finds the hooks at all
    table = sections(PLUGIN_PAGE)["Hooks"]
    rows = documented_rows(table)
    assert sorted(rows) == hooks(), \
        f"the Hooks table of {PLUGIN_PAGE.relative_to(REPO)} must list exactly the hooks"
    for name, cells in rows.items():
        assert all(cells), f"hook {name}: a cell of its row is empty"


def test_every_hook_has_a_docstring_the_reference_renders() -> None:
    assert "::: harness.plugin.hookspecs" in PLUGIN_PAGE.read_text(encoding="utf-8")
    for name in hooks():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name}: no docstring"


# --- command-line options -----------------------------------------------------------------

def test_the_cli_reference_is_generated_from_the_click_commands() -> None:
    page = CLI_PAGE.read_text(encoding="utf-8")
    directive = re.search(r"^::: mkdocs-click\n((?:    :\w+: .*\n)+)", page, re.MULTILINE)
    assert directive, f"{CLI_PAGE.relative_to(REPO)} has no mkdocs-click directive"
    settings = dict(re.findall(r":(\w+): (.*)", directive[1]))
    assert settings["module"] == "harness.cli" and settings["command"] == "main"
    assert settings["style"] == "table"


def test_every_cli_option_has_help_text() -> None:
    seen = 0
    for path, command in commands():
        for option in options(command, path):
            seen += 1
            name = f"{path} {option.opts[0]}"
            assert (option.help or "").strip(), f"{name} has no help text"
            assert "\n" not in option.help and "|" not in option.help, \
                f"{name}: help text must be one line without '|' (it goes in a table)"
    assert seen > 40  # the walk reaches run's options too


def test_the_generated_cli_reference_shows_every_option_with_its_help() -> None:
    docs = pytest.importorskip("mkdocs_click._docs", reason="mkdocs-click is not installed "
                               "(pip install -e '.[docs]')")
    lines = list(docs.make_command_docs(prog_name="harness", command=main, depth=1,
                                        style="table"))
    for path, command in commands():
        if command.hidden:  # an alias of a documented command, left out of the page
            continue
        for option in options(command, path):
            names = [f"`{opt}`" for opt in option.opts]
            assert option.help and any(
                line.startswith("| ") and all(n in line for n in names)
                and option.help in line for line in lines), \
                f"{path} {option.opts[0]}: no row with its help in the generated reference"


# --- task-file keys -----------------------------------------------------------------------

def test_every_task_file_key_is_documented_in_its_table_section() -> None:
    tables = task_file_tables()
    assert {"top level", "[corpus]", "[generate]", "[defaults]",
            "[reference_defaults]"} <= set(tables)  # the walk found the code's checks
    page = sections(TASK_PAGE)
    for table, keys in tables.items():
        heading = "Top-level keys" if table == "top level" else next(
            (h for h in page if f"`{table}`" in h), None)
        assert heading in page, f"{TASK_PAGE.relative_to(REPO)}: no section for {table}"
        rows = documented_rows(page[heading])
        for key in keys:
            assert key in rows, f"task-file key {table} {key} is not documented"
            assert rows[key][-1], f"task-file key {table} {key}: its meaning is empty"
        stale = sorted(set(rows) - set(keys))
        assert not stale, f"{table}: documented keys that do not exist: {stale}"


def test_every_top_level_table_has_its_keys_listed() -> None:
    """A new table in a task file needs its keys in the docs: the walk must know it."""
    tables = task_file_tables()
    scalars = {"name", "description", "tokenizer", "text"}
    for key in taskfile._KEYS:
        assert key in scalars or f"[{key}]" in tables or f"[[{key}]]" in tables, \
            f"top-level key {key}: neither a plain value nor a table whose keys are known"


# --- the site -----------------------------------------------------------------------------

def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed "
                        "(pip install -e '.[docs]')")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--models" in cli and "--reproducible" in cli  # the generated CLI reference
    api = (site / "reference" / "python-api" / "index.html").read_text(encoding="utf-8")
    assert "RunRequest" in api and ":class:" not in api  # docstrings, roles shown as code
