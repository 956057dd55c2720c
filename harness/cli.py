"""The command line: parse options into a request, call the front door, print.

Imports nothing heavy until a command runs, so ``harness --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import copy
import shlex
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

import harness
from harness.console import EXIT_SIGINT, InterruptibleGroup, one_line_warning
from harness.errors import HarnessError
from harness.version import __version__

EXIT_ERROR = 1
"""The harness itself could not go on (e.g. a worker process cannot start)."""
EXIT_USAGE = 2
EXIT_PARTIAL = 3
"""Some combinations failed, diverged, crashed or timed out; the others' results are in the
run directory. Interrupted runs exit with 128 + the signal: 130 (Ctrl-C), 143 (SIGTERM)."""

RESUME_OPTIONS = {"resume", "executor", "address", "cpus_per_task", "jobs", "timeout",
                  "isolate", "quiet", "retry_failed", "fmt", "track"}
"""What ``--resume`` may be combined with: how to run, never what to run."""

EXECUTOR_OPTIONS = ("jobs", "timeout", "isolate", "address", "cpus_per_task")


class UsageError(click.ClickException):
    """A one-line error for bad input, exit code 2."""

    exit_code = EXIT_USAGE


@contextlib.contextmanager
def _usage_errors():
    """The library's one-line errors as exit code 2."""
    try:
        yield
    except HarnessError as error:
        raise UsageError(str(error)) from None


def _names(text: str | None) -> tuple[str, ...] | None:
    """``a,b,c`` as names (``all`` included); None when the option was not given."""
    if text is None:
        return None
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _seeds(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--seed takes integers separated by commas, got {text!r}") from None


format_option = click.option(
    "--format", "fmt", type=click.Choice(harness.FORMATS), default="markdown",
    show_default=True, help="How the table on stdout is written (progress and logs go to stderr).")


@click.group(cls=InterruptibleGroup)
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Benchmark sequence models on a text corpus: every model with every sampler."""
    warnings.formatwarning = one_line_warning


@main.command()
@click.option("--models", "-m", help="Comma-separated model names, or 'all' "
              "[default: the task's].")
@click.option("--samplers", "-s", help="Comma-separated sampler names, or 'all' "
              "[default: the task's].")
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
@click.option("--optimizer", help="Optimizer plugin: sgd (d2l's), adam, adamw "
              "[task default; d2l's task: sgd].")
@click.option("--schedule", help="Learning-rate schedule plugin: constant, cosine (linear "
              "warm-up then cosine), step [task default].")
@click.option("--weight-decay", type=float, help="Weight decay [default: 0].")
@click.option("--warmup-steps", type=int, help="Warm-up optimizer steps [default: 0].")
@click.option("--budget", "budget", metavar="UNIT=N",
              help="Train every combination for the same budget: tokens=N, steps=N, "
                   "seconds=N or epochs=N (the first reached stops training).")
@click.option("--target", "target", metavar="METRIC=X",
              help="Record the tokens and seconds each combination needed to reach it, "
                   "e.g. valid_bpc=2.2 (a task with [splits]).")
@click.option("--stop-at-target", is_flag=True, default=None,
              help="With --target: stop a combination when it reaches the target.")
@click.option("--seed", "--seeds", "seeds",
              help="Random seeds, comma-separated; each combination runs once per seed "
                   "[default: 0].")
@click.option("--repeats", type=int, help="Run every combination with seeds 0 to N-1.")
@click.option("--set", "grid", multiple=True, metavar="NAME=V1,V2",
              help="Also run every combination at each of these values of a recipe setting "
                   "(hidden, layers, lr, ...); repeat for a grid: --set hidden=256,512 "
                   "--set lr=0.5,1.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Where run directories are created.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines on stderr.")
@click.option("--executor", type=click.Choice(harness.EXECUTORS),
              help="How combinations run: serial (in this process), processes (--jobs N "
                   "local workers) or ray (one Ray task each, on a cluster or a local Ray) "
                   "[default: serial, or processes with --jobs/--timeout/--isolate].")
@click.option("--address", help="With --executor ray: the Ray cluster to join (HOST:6379, or "
              "'auto' for the one running on this host) [default: start a local Ray].")
@click.option("--cpus-per-task", type=int, help="With --executor ray: CPUs (and torch "
              "threads) each combination's task asks Ray for [default: 1].")
@click.option("--jobs", "-j", type=int, help="Run combinations in N worker processes, torch "
              "threads split between them [default: one after another, in this process].")
@click.option("--timeout", type=float, help="Seconds a combination may run, from when its "
              "worker starts it; past that the worker is killed and the combination recorded "
              "as 'timeout' (implies --jobs 1).")
@click.option("--isolate", is_flag=True, help="A fresh worker process for every combination "
              "(implies --jobs 1).")
@click.option("--save-checkpoints", is_flag=True,
              help="Save each combination's trained weights (for 'harness generate').")
@click.option("--track", metavar="NAMES",
              help="Export the run to trackers, comma-separated: tensorboard (event files in "
                   "RUN_DIR/tensorboard), mlflow (MLFLOW_TRACKING_URI, else RUN_DIR/mlruns), "
                   "or an observer plugin's name (see 'harness plugins').")
@click.option("--reproducible", is_flag=True,
              help="The same numbers on any number of threads, so --jobs and --executor "
                   "ray match a serial run bit for bit (oneMKL's MKL_CBWR=AUTO,STRICT; "
                   "slower).")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Finish an interrupted run: only combinations without a record run, "
                   "with the run's own settings.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume: also rerun combinations that failed, crashed or timed out.")
@format_option
def run(*, models: str | None, samplers: str | None, task: str, corpus: Path | None,
        seeds: str | None, repeats: int | None, grid: tuple[str, ...], device: str,
        output_dir: Path, quiet: bool, executor: str | None, save_checkpoints: bool,
        reproducible: bool, resume: Path | None, retry_failed: bool, fmt: str,
        track: str | None, **options: Any) -> None:
    """Train every chosen model with every chosen sampler and report the results.

    Prints the results table (mean ± std over seeds, per model and sampler) on stdout;
    writes a run directory with records, curves, charts and report.md. Exit codes: 0 all
    ok, 2 bad input, 3 some combinations failed, diverged, crashed or timed out, 130/143
    interrupted by Ctrl-C/SIGTERM (finish with --resume RUN_DIR), 1 the harness could not
    go on.
    """
    command = shlex.join(["harness", *sys.argv[1:]])
    choice = {name: options.pop(name) for name in EXECUTOR_OPTIONS}
    budget, target = options.pop("budget"), options.pop("target")
    with _usage_errors():
        if budget is not None:
            options.update(harness.parse_budget(budget))
        if target is not None:
            options.update(harness.parse_target(target))
        executor_choice = harness.ExecutorChoice(kind=executor, **choice)
        if resume is not None:
            _refuse_with_resume(click.get_current_context())
            result = _interruptible(lambda: harness.resume(
                resume, executor=executor_choice, quiet=quiet, command=command,
                retry_failed=retry_failed, track=_names(track)))
        else:
            if retry_failed:
                raise UsageError("--retry-failed goes with --resume RUN_DIR")
            request = harness.RunRequest(
                models=_names(models), samplers=_names(samplers), seeds=_seeds(seeds),
                repeats=repeats, task=task, corpus=corpus, device=device, recipe=options,
                grid=harness.parse_set_options(grid), executor=executor_choice,
                output_dir=output_dir, save_checkpoints=save_checkpoints,
                reproducible=reproducible, quiet=quiet, command=command,
                track=_names(track) or ())
            result = _interruptible(lambda: harness.run(request))
    click.echo(harness.format_summary(harness.summarize_runs(result.table), fmt))
    _summarise(result, quiet)
    if result.status != "complete":
        sys.exit(EXIT_PARTIAL)


def _refuse_with_resume(ctx: click.Context) -> None:
    given = [param.opts[0] for param in ctx.command.params
             if param.name in ctx.params and param.name not in RESUME_OPTIONS
             and ctx.get_parameter_source(param.name)
             in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
    if given:
        raise UsageError(f"--resume takes what to run from the run's manifest; drop "
                         f"{', '.join(given)} (only --executor, --address, --cpus-per-task, "
                         "--jobs, --timeout, --isolate, --retry-failed, --track, --quiet and "
                         "--format go with it)")


def _interruptible(start: Callable[[], Any]) -> Any:
    """Run, turning Ctrl-C/SIGTERM into a message and exit code 130/143. Whatever the run
    prints on stdout (a plugin's print, Ray's relayed worker and raylet lines) goes to
    stderr: stdout is the results table's alone, so ``--format csv > file`` stays CSV."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return start()
    except harness.RunInterrupted as stop:
        where = stop.run_dir
        click.echo(f"interrupted by {signal.Signals(stop.signum).name}"
                   + (f"; finished combinations are in {where}; finish the run with: "
                      f"harness run --resume {shlex.quote(str(where))}" if where else ""),
                   err=True)
        sys.exit(stop.exit_code)
    except (harness.WorkerError, harness.StorageError) as error:  # what is on disk is kept
        click.echo(f"Error: {error}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:  # before the run's own signal handling was in place
        click.echo("interrupted by SIGINT before the run started", err=True)
        sys.exit(EXIT_SIGINT)


def _summarise(result: Any, quiet: bool) -> None:
    """On stderr: every combination that did not finish ok, why, and where the details are."""
    store = harness.RunStore.open(result.path)
    bad = [r for r in store.records() if not r.ok]
    if bad:
        click.echo(f"{len(bad)} of {len(result.table)} combinations did not finish ok:", err=True)
    for record in sorted(bad, key=lambda r: r.key):
        details = store.error_file(record.key)
        click.echo(f"  {record.label}: {record.status}: {record.error or ''}"
                   + (f" [{details}]" if details.is_file() else ""), err=True)
    if not quiet:
        click.echo(f"report: {result.path / 'report.md'}", err=True)


@main.command()
def plugins() -> None:
    """List models, samplers, optimizers, learning-rate schedules and observers (--track)
    with the plugin and distribution providing each.

    One line per entry: what a plugin supplies (names, descriptions, error text) is shown
    with line breaks and other control characters escaped (``\\n``), so it cannot print
    lines of its own."""
    def line(text: object) -> str:
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))

    registry = harness.load_registry()
    rows = []
    catalogs = {"model": registry.models, "sampler": registry.samplers,
                "optimizer": registry.optimizers, "schedule": registry.schedules,
                "observer": registry.observers}
    for kind, catalog in catalogs.items():
        for name in catalog.names():
            spec, provider = catalog.specs[name], catalog.providers[name]
            rows.append((kind, line(name), line(provider.plugin),
                         line(f"{provider.distribution} {provider.version}"),
                         line(spec.description)))
    width = max(len(r[1]) for r in rows) if rows else 0
    for kind, name, plugin, dist, description in rows:
        click.echo(f"{kind:9} {name:{width}}  {description}  [{plugin}; {dist}]")
    for catalog in catalogs.values():
        for message in catalog.conflicts.values():
            click.echo(f"conflict: {line(message)}")
    for failure in registry.failures:
        click.echo(f"failed:   {line(failure.plugin)} "
                   f"({line(f'{failure.distribution} {failure.version}')}): "
                   f"{line(failure.error)}")


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@format_option
@click.option("--quiet", "-q", is_flag=True, help="Do not print the report's path on stderr.")
def report(*, run_dir: Path, fmt: str, quiet: bool) -> None:
    """Regenerate RUN's report.md and charts from its stored records; print its table.

    Uses nothing but the run directory, and gives identical files when run again.
    """
    with _usage_errors():
        path = harness.report(run_dir)
        table = harness.summarize_runs(harness.load_run(run_dir).drop(columns="run_id"))
    click.echo(harness.format_summary(table, fmt))
    if not quiet:
        click.echo(f"report: {path}", err=True)


@main.command()
@click.argument("runs", metavar="RUN_A RUN_B [RUN...]", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("--force", is_flag=True,
              help="Compare runs even if their corpus or recipe differ (the table says so).")
@click.option("--alpha", type=float, default=harness.ALPHA, show_default=True,
              help="Significance level of Welch's t-test verdicts.")
@format_option
def compare(*, runs: tuple[Path, ...], force: bool, alpha: float, fmt: str) -> None:
    """Compare runs side by side, per model and sampler, against the first (the baseline).

    Refuses runs with different corpora or recipes (exit 2, naming the differing
    settings) unless --force. Changes are tested with Welch's t-test where both sides have
    at least 3 ok seeds. Two runs of a held-out task scored on the same test characters
    are also compared pairwise, token by token (Markdown only; see harness.results.paired).
    """
    with _usage_errors():
        comparison = harness.compare_runs(list(runs), force=force, alpha=alpha)
    click.echo(harness.format_comparison(comparison, fmt))
    if len(runs) == 2 and fmt == "markdown":
        try:
            paired = harness.format_paired_runs(harness.paired_runs(*runs))
        except HarnessError as error:  # not the same test characters: no paired test
            click.echo(f"no paired test on the test split: {error}", err=True)
        else:
            if paired:
                click.echo("\n" + paired)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, help="The model whose checkpoint to use.")
@click.option("--sampler", "-s", help="Its minibatch sampler, when the run saved several.")
@click.option("--seed", type=int, help="Its seed, when the run saved several.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Its point of a --set grid (hidden=16, lr=0.5, ...), when the run saved "
                   "several; repeat for each setting.")
@click.option("--prefix", "-p", required=True,
              help="Text to start from; lower-cased, non-letters made spaces, as the corpus.")
@click.option("--length", "-n", type=int, default=50, show_default=True,
              help="Tokens to generate.")
@click.option("--temperature", "-t", type=float, default=0.0, show_default=True,
              help="0: greedy (as the text a run generates); > 0 (finite): draw from "
                   "softmax(logits / T).")
@click.option("--top-k", type=int, help="With --temperature: draw among the K likeliest only.")
@click.option("--draw-seed", type=int, help="Seed the draws (with --temperature).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
def generate(*, run_dir: Path, model: str, sampler: str | None, seed: int | None,
             settings: tuple[str, ...], prefix: str, length: int, temperature: float,
             top_k: int | None, draw_seed: int | None, device: str) -> None:
    """Generate text from weights saved by 'harness run --save-checkpoints'."""
    with _usage_errors():
        point = _point(settings)
        text = harness.generate(run_dir, model=model, prefix=prefix, sampler=sampler,
                                seed=seed, settings=point, length=length,
                                temperature=temperature, top_k=top_k, draw_seed=draw_seed,
                                device=device)
    click.echo(text)


sample = copy.copy(generate)  # hidden alias: 'sample' was this command's name
sample.hidden = True
main.add_command(sample, name="sample")


def _point(options: tuple[str, ...]) -> dict[str, str]:
    """``--set hidden=16 --set lr=0.5`` (one value each) as setting name -> text value."""
    point: dict[str, str] = {}
    for name, values in harness.parse_set_options(options).items():
        if len(values) != 1:
            raise UsageError(f"--set {name}: give one value to pick a checkpoint, got "
                             f"{','.join(values)}")
        point[name] = values[0]
    return point
