"""The command line: parse, then delegate to the library. ``harness --help`` for usage."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from harness import __version__
from harness.api import execute
from harness.errors import HarnessError
from harness.plan import DEFAULT_MODELS, DEFAULT_SAMPLERS, make_plan, split_names
from harness.plugins import load_registry
from harness.results import format_table
from harness.store import check_writable

EXIT_USAGE = 2
EXIT_PARTIAL = 3
"""Some combinations failed or diverged; the others' results are in the run directory."""


class UsageError(click.ClickException):
    """A one-line error for bad input, exit code 2."""

    exit_code = EXIT_USAGE


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seed takes integers separated by commas, got {text!r}") from None


@click.group()
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Benchmark sequence models on a text corpus: every model with every sampler."""


@main.command()
@click.option("--models", "-m", help=f"Comma-separated model names, or 'all' "
              f"[default: {','.join(DEFAULT_MODELS)}].")
@click.option("--samplers", "-s", help=f"Comma-separated sampler names, or 'all' "
              f"[default: {','.join(DEFAULT_SAMPLERS)}].")
@click.option("--task", default="timemachine", show_default=True,
              help="A shipped task name or a task file (.toml).")
@click.option("--corpus", type=click.Path(path_type=Path),
              help="Local corpus file instead of downloading (env: HARNESS_CORPUS).")
@click.option("--epochs", type=int, help="Training epochs [task default: 500].")
@click.option("--hiddens", "num_hiddens", type=int, help="Hidden units [task default: 512].")
@click.option("--layers", "num_layers", type=int, help="Recurrent layers [default: 1].")
@click.option("--dropout", type=float, help="Dropout between layers [default: 0].")
@click.option("--batch-size", type=int, help="Minibatch size [task default: 32].")
@click.option("--steps", "num_steps", type=int, help="Time steps per minibatch [task default: 35].")
@click.option("--lr", type=float, help="SGD learning rate [task default: 1].")
@click.option("--clip", type=float, help="Gradient-norm clipping threshold [task default: 1].")
@click.option("--max-tokens", type=int, help="Training tokens [task default: 10000].")
@click.option("--valid-tokens", type=int,
              help="Validation tokens after the training slice; 0 disables [default: 5000].")
@click.option("--eval-every", type=int,
              help="Validate every N epochs (and after the last); 0: last only [default: 50].")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]),
              help="Matrix products in fp32, or bf16 with fp32 weights [default: fp32].")
@click.option("--seed", "seeds", default="0", show_default=True,
              help="Random seed (comma-separated for several).")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Where run directories are created.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines on stderr.")
def run(models: str | None, samplers: str | None, task: str, corpus: Path | None,
        seeds: str, device: str, output_dir: Path, quiet: bool, **recipe: object) -> None:
    """Train every chosen model with every chosen sampler and report the results.

    Prints the results table (Markdown) on stdout; writes a run directory with records,
    curves and report.md. Exit codes: 0 all ok, 2 bad input, 3 some combinations failed.
    """
    registry = load_registry()
    try:
        plan = make_plan(
            registry,
            split_names(models, DEFAULT_MODELS, registry.models.names()),
            split_names(samplers, DEFAULT_SAMPLERS, registry.samplers.names()),
            _seeds(seeds), task, recipe, corpus, device,
        )
        check_writable(output_dir)
    except HarnessError as error:
        raise UsageError(str(error)) from None
    command = shlex.join(["harness", *sys.argv[1:]])
    result = execute(plan, registry, output_dir, quiet=quiet, command=command)
    click.echo(format_table(result.table))
    if not quiet:
        click.echo(f"report: {result.path / 'report.md'}", err=True)
    if result.status != "complete":
        sys.exit(EXIT_PARTIAL)


@main.command()
def plugins() -> None:
    """List models and samplers with the plugin and distribution providing each."""
    registry = load_registry()
    rows = []
    for kind, catalog in (("model", registry.models), ("sampler", registry.samplers)):
        for name in catalog.names():
            spec, provider = catalog.specs[name], catalog.providers[name]
            rows.append((kind, name, provider.plugin,
                         f"{provider.distribution} {provider.version}", spec.description))
    width = max(len(r[1]) for r in rows) if rows else 0
    for kind, name, plugin, dist, description in rows:
        click.echo(f"{kind:8} {name:{width}}  {description}  [{plugin}; {dist}]")
    for catalog in (registry.models, registry.samplers):
        for message in catalog.conflicts.values():
            click.echo(f"conflict: {message}")
    for failure in registry.failures:
        click.echo(f"failed:  {failure.plugin} ({failure.distribution} {failure.version}): "
                   f"{failure.error}")
