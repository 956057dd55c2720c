import csv
import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.results.store import RunStore
from helpers import blank_manifest

FAST = ["--epochs", "2", "--hiddens", "16", "--max-tokens", "2000", "--valid-tokens", "1200",
        "--eval-every", "1", "-q"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_run_prints_table_and_writes_run_directory(runner: CliRunner, timemachine: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--models", "scratch,nnrnn", "--corpus",
                                  str(timemachine), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| model") and "train_ppl" in lines[0]
    assert len(lines) == 2 + 6  # header, rule, 2 models x 3 samplers
    (run_dir,) = out.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["settings"]["corpus"]["sha1"] == "090b5e7e70c295757f55df93cb0a180b9691891a"
    assert manifest["settings"]["recipe"]["epochs"] == 2
    assert manifest["environment"]["torch"] and manifest["environment"]["cpu"]
    records = [json.loads(l) for l in (run_dir / "records.jsonl").read_text().splitlines()]
    assert {(r["model"], r["sampler"]) for r in records} == {
        (m, s) for m in ("scratch", "nnrnn") for s in ("sequential", "random", "sequential-reset")}
    assert all(r["status"] == "ok" and r["valid_ppl"] > 1 for r in records)
    assert len(list((run_dir / "curves").iterdir())) == 6
    report = (run_dir / "report.md").read_text()
    for heading in ("## Settings", "## Environment", "## Results", "## Generated text",
                    "## Training curves"):
        assert heading in report
    assert "time traveller" in report


@pytest.mark.parametrize("args,message", [
    (["--models", "scratch,nope"], "unknown model 'nope'; choose from: gru, lstm, ngram, nnrnn, scratch"),
    (["--samplers", "shuffled"], "unknown sampler 'shuffled'; choose from:"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--batch-size", "4000"], "needs at least"),
    (["--device", "tpu"], "unknown device"),
    (["--task", "nosuch"], "unknown task 'nosuch'"),
    (["--seed", "a"], "--seed takes integers"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_directory(
    runner: CliRunner, timemachine: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--corpus", str(timemachine), "-o", str(out),
                                  *FAST, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_missing_corpus_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["run", "--corpus", str(tmp_path / "nope.txt"), *FAST])
    assert result.exit_code == 2 and "corpus file not found" in result.output


def test_plugins_lists_models_and_samplers_with_provenance(runner: CliRunner) -> None:
    result = runner.invoke(main, ["plugins"])
    assert result.exit_code == 0
    assert "scratch" in result.output and "sequential-reset" in result.output
    assert "harness_builtins.rnn; rnn-harness" in result.output


def test_python_m_harness_works() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "harness", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("harness, version")


SMALL = ["--models", "scratch", "--samplers", "sequential,random", "--epochs", "2",
         "--max-tokens", "400", "--valid-tokens", "200"]


def run_dir(out: Path) -> Path:
    (path,) = out.iterdir()
    return path


def test_repeats_run_every_combination_per_seed_and_summarise_them(
    runner: CliRunner, small_task: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "--repeats", "3",
                                  "-o", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))  # stdout is the table alone
    assert [(r["model"], r["sampler"], r["n"], r["n_ok"]) for r in rows] == [
        ("scratch", "random", "3", "3"), ("scratch", "sequential", "3", "3")]
    assert float(rows[0]["train_ppl_std"]) > 0 and float(rows[0]["tokens_per_sec_mean"]) > 0
    assert "run directory:" in result.stderr and "report:" in result.stderr
    records = (run_dir(out) / "records.jsonl").read_text().splitlines()
    assert sorted((json.loads(r)["sampler"], json.loads(r)["seed"]) for r in records) == [
        (s, k) for s in ("random", "sequential") for k in range(3)]


def test_seeds_is_an_alias_of_seed(runner: CliRunner, small_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "--seeds", "4,7",
                                  "-o", str(out), "-q", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["n"] for r in json.loads(result.stdout)] == [2, 2]
    assert json.loads((run_dir(out) / "manifest.json").read_text())["settings"]["seeds"] == [4, 7]


def test_a_repeated_seed_runs_once_as_a_repeated_model_does(runner: CliRunner, small_task: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "--seed", "7,0,7",
                                  "--models", "scratch,scratch", "--samplers", "sequential",
                                  "-o", str(out), "-q", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["n"] for r in json.loads(result.stdout)] == [2]
    keys = [json.loads(line)["key"] for line in (run_dir(out) / "records.jsonl").open()]
    assert sorted(keys) == ["scratch__sequential__seed0", "scratch__sequential__seed7"]


@pytest.mark.parametrize("args,message", [
    (["--seed", "1", "--repeats", "2"], "not both"),
    (["--repeats", "0"], "--repeats must be a positive integer"),
    (["--format", "xml"], "Invalid value for '--format'"),
])
def test_seed_and_format_mistakes_are_usage_errors(runner: CliRunner, small_task: Path,
                                                   tmp_path: Path, args: list[str],
                                                   message: str) -> None:
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "-o", str(tmp_path),
                                  *args])
    assert result.exit_code == 2 and message in result.output
    assert not any(tmp_path.glob("*/manifest.json"))


def test_set_multiplies_the_grid_and_the_table_groups_by_setting(
    runner: CliRunner, small_task: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "--set", "hidden=8,16",
                                  "--set", "lr=0.5,1", "-o", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2 * 2 * 2 and {r["n"] for r in rows} == {"1"}
    assert {(r["sampler"], r["setting.num_hiddens"], r["setting.lr"]) for r in rows} == {
        (s, h, lr) for s in ("random", "sequential") for h in ("8", "16") for lr in ("0.5", "1.0")}
    assert "scratch/random/num_hiddens=16/lr=0.5/seed0: ok" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--set", "bogus=1"], "unknown setting 'bogus'; choose from: epochs, batch_size"),
    (["--set", "hidden=big"], "--set num_hiddens: 'big' is not an integer"),
    (["--set", "lr=0,1"], "--set lr=0.0: lr must be a finite number > 0"),
    (["--set", "lr"], "--set takes NAME=VALUE"),
    (["--lr", "1", "--set", "lr=2"], "lr given both as an option and in --set"),
    (["--executor", "ray", "--jobs", "2"], "--jobs is the process executor's"),
    (["--executor", "serial", "--timeout", "5"], "need worker processes"),
    (["--address", "localhost:6379"], "--address and --cpus-per-task go with --executor ray"),
    (["--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["--executor", "processes", "--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task must be a positive integer, got 0"),
    (["--timeout", "inf"], "--timeout must be a finite number of seconds > 0 and at most"),
    (["--timeout", "1e10"], "at most 2073600, got 10000000000.0"),
    (["--executor", "ray", "--timeout", "inf"], "--timeout must be a finite number"),
    (["--timeout", "0"], "--timeout must be a finite number of seconds > 0"),
    (["--seed", "99999999999999999999999"], "--seed must be from 0 to 2**63 - 1"),
    (["--seed", "0,-1"], "--seed must be from 0 to 2**63 - 1 (9223372036854775807), got -1"),
])
def test_grid_and_executor_mistakes_are_usage_errors(runner: CliRunner, small_task: Path,
                                                     tmp_path: Path, args: list[str],
                                                     message: str) -> None:
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "-o", str(tmp_path),
                                  *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not any(tmp_path.glob("*/manifest.json"))


def test_executor_ray_without_ray_says_how_to_install_it(
    runner: CliRunner, small_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray has
    result = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "-o", str(tmp_path),
                                  "--executor", "ray"])
    assert result.exit_code == 2
    assert result.output == ("Error: --executor ray needs Ray, which is not installed: "
                             "pip install 'rnn-harness[ray]' (or pip install 'ray>=2.40')\n")
    assert not any(tmp_path.glob("*/manifest.json"))


def test_report_regenerates_what_run_wrote(runner: CliRunner, small_task: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "results"
    made = runner.invoke(main, ["run", "--task", str(small_task), *SMALL, "--seeds", "0,1",
                                "-o", str(out), "-q", "--format", "csv"])
    assert made.exit_code == 0, made.output
    path = run_dir(out)
    written = {p.relative_to(path): p.read_bytes()
               for p in [path / "report.md", *(path / "plots").iterdir()]}
    assert len(written) == 1 + 3  # report.md, two curve charts, the tokens/sec chart
    for file in written:
        (path / file).unlink()
    again = runner.invoke(main, ["report", str(path), "--format", "csv"])
    assert again.exit_code == 0, again.output
    assert again.stdout == made.stdout
    assert {p: (path / p).read_bytes() for p in written} == written
    assert runner.invoke(main, ["report", str(path), "-q"]).stdout.startswith("| model")


def test_report_of_a_directory_that_is_not_a_run_is_a_usage_error(runner: CliRunner,
                                                                   tmp_path: Path) -> None:
    result = runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


@pytest.mark.parametrize("records", [None, ""])
def test_report_and_compare_of_a_run_without_records_print_a_header(
        runner: CliRunner, tmp_path: Path, records: str | None) -> None:
    runs = [RunStore.create(tmp_path, blank_manifest(status="interrupted")) for _ in range(2)]
    if records is not None:
        (runs[0].path / "records.jsonl").write_text(records)
    report = runner.invoke(main, ["report", str(runs[0].path), "-q"])
    assert report.exit_code == 0, report.output
    assert report.stdout.splitlines()[0].startswith("| model") and report.stdout.count("\n") == 2
    compared = runner.invoke(main, ["compare", *(str(r.path) for r in runs)])
    assert compared.exit_code == 0, compared.output
    table, environment = compared.stdout.rstrip().split("\n\n**Environment**: ")
    assert table.splitlines()[-1].startswith("|--")  # the header, no rows
    assert environment == "the runs' environments match."


def test_huge_learning_rate_diverges_and_is_reported_as_such(runner: CliRunner,
                                                              timemachine: Path,
                                                              tmp_path: Path) -> None:
    result = runner.invoke(main, ["run", "--models", "scratch,nnrnn", "--samplers", "sequential",
                                  "--corpus", str(timemachine), "-o", str(tmp_path),
                                  *FAST, "--lr", "1e4"])
    assert result.exit_code == 3
    assert "2 of 2 combinations did not finish ok" in result.stderr
    (run_dir,) = tmp_path.iterdir()
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: no bare NaN
    assert all("NaN" not in line and "Infinity" not in line for line in lines)
    for record in records:
        assert record["status"] == "diverged" and record["train_ppl"] is None
        assert " at step " in record["error"] and "perplexity overflows" in record["error"]
    assert "| diverged: 0 |" in result.stdout and "nan" not in result.stdout
    assert "## Not ok" in (run_dir / "report.md").read_text()


def test_corpus_shorter_than_a_minibatch_names_the_file(runner: CliRunner,
                                                        tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("The Time Traveller, by H. G. Wells\n" * 3)  # has the prefixes' letters
    result = runner.invoke(main, ["run", "--task", "timemachine", "--corpus", str(corpus),
                                  "-o", str(tmp_path / "out"), "-q"])
    # the task's sha1 refuses this file first; a task without a sha1 reaches the size check
    assert result.exit_code == 2 and str(corpus) in result.output
    task = tmp_path / "tiny.toml"
    task.write_text('name = "tiny"\n[corpus]\npath = "tiny.txt"\n')
    result = runner.invoke(main, ["run", "--task", str(task), "-m", "scratch", "-s",
                                  "sequential", "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    assert str(corpus) in result.output and "one minibatch" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_output_directory_is_refused_before_training(runner: CliRunner,
                                                               timemachine: Path,
                                                               tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(main, ["run", "--corpus", str(timemachine), "-o",
                                  str(blocker / "results"), *FAST])
    assert result.exit_code == 2 and "not writable" in result.output


def test_two_runs_into_one_results_directory_keep_their_own_records(small_task: Path,
                                                                    tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "results"
    command = [sys.executable, "-m", "harness", "run", "--task", str(small_task), "--models",
               "scratch", "--samplers", "sequential", "--epochs", "1", "-o", str(out), "-q"]
    processes = [subprocess.Popen([*command, "--seed", str(seed)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.communicate()
    runs = sorted(out.iterdir())
    assert len(runs) == 2
    seeds = set()
    for run_dir in runs:
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"
        records = [json.loads(l) for l in (run_dir / "records.jsonl").read_text().splitlines()]
        assert len(records) == 1
        seeds |= {r["seed"] for r in records}
    assert seeds == {0, 1}


CHATTY = """
    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec
    from harness_builtins.rnn import build_scratch


    def chatty(vocab_size, settings, device):
        print("a plugin's own line on stdout")
        return build_scratch(vocab_size, settings, device)


    @hookimpl
    def register_models(register):
        register(ModelSpec("chatty", chatty))
"""


def test_what_a_run_prints_on_stdout_goes_to_stderr_so_stdout_is_the_table(
        runner: CliRunner, small_task: Path, site: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_plugins import make_distribution

    make_distribution(site, "fake-chatty", "0.1", "fake_chatty", CHATTY)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD")
    result = runner.invoke(main, ["run", "--task", str(small_task), "--models", "chatty",
                                  "--samplers", "sequential", "--epochs", "1", "-q",
                                  "--format", "csv", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert row["model"] == "chatty"
    assert "a plugin's own line on stdout" in result.stderr


@pytest.fixture(scope="module")
def finished_run(module_small_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run (two seeds), which tests copy before they change it."""
    out = tmp_path_factory.mktemp("finished") / "results"
    made = CliRunner().invoke(main, ["run", "--task", str(module_small_task), "--models",
                                     "scratch", "--samplers", "sequential", "--seeds", "0,1",
                                     "--epochs", "2", "-o", str(out), "-q"])
    assert made.exit_code == 0, made.output
    return run_dir(out)


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / run.name))


def test_report_refuses_a_plots_link_and_writes_nothing_outside_the_run(
        runner: CliRunner, finished_run: Path, tmp_path: Path) -> None:
    path = copy_run(finished_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "thesis.png").write_bytes(b"mine")
    import shutil

    shutil.rmtree(path / "plots")
    (path / "plots").symlink_to(elsewhere, target_is_directory=True)
    report_before = (path / "report.md").read_bytes()
    result = runner.invoke(main, ["report", str(path)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"Error: {path / 'plots'} is a symbolic link; the harness does not write through "
        "links in a run directory (replace it by a real folder)"]
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.png"]
    assert (elsewhere / "thesis.png").read_bytes() == b"mine"
    assert (path / "report.md").read_bytes() == report_before
    resumed = runner.invoke(main, ["run", "--resume", str(path), "-q"])
    assert resumed.exit_code == 2 and "plots is a symbolic link" in resumed.output
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.png"]


@pytest.mark.parametrize("content", [
    b"\xff\xfe not UTF-8", b"[1, 2, 3]", b'{"settings": {"seeds": "x"}}',
    b'{"settings": {"grid": 5}}', b'{"status": "complete", "plan": {"combinations": [7]}}',
    b'{"settings": {"models": "scratch"}}',
])
def test_a_hand_corrupted_manifest_is_one_line_naming_it(runner: CliRunner, finished_run: Path,
                                                         tmp_path: Path, content: bytes) -> None:
    path = copy_run(finished_run, tmp_path)
    manifest = path / "manifest.json"
    manifest.write_bytes(content)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    for args in (["report", str(path)], ["run", "--resume", str(path), "-q"],
                 ["compare", str(finished_run), str(path)],
                 ["compare", str(path), str(finished_run)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        (line,) = result.output.splitlines()
        assert line.startswith(f"Error: {manifest}: not a harness manifest ("), args
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before  # nothing lost, nothing rewritten


def test_report_skips_an_unreadable_curve_says_so_and_writes_the_rest(
        runner: CliRunner, finished_run: Path, tmp_path: Path) -> None:
    path = copy_run(finished_run, tmp_path)
    bad, good = sorted((path / "curves").iterdir())
    bad.write_bytes(b"epoch,train_ppl\n1,abc\n2,\xff\n")
    import subprocess  # as a user runs it: Python's own warnings on a real stderr

    result = subprocess.run([sys.executable, "-m", "harness", "report", str(path), "--format",
                             "csv"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "skipping a curve" in line]
    assert len(warned) == 1 and f"{bad}: not a curve" in warned[0]
    assert len(result.stdout.splitlines()) == 2  # the table: header and its one group
    report = (path / "report.md").read_text()
    assert "Skipped a curve file that cannot be read:" in report
    assert "scratch/sequential/seed1 train" in report or "scratch/sequential/seed0 train" \
        in report
    assert len(list((path / "plots").iterdir())) == 2  # the curves chart and tokens/sec
    assert good.read_bytes().startswith(b"epoch")


FORGER = """
    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec, SamplerSpec
    from harness_builtins.rnn import build_scratch
    from harness_builtins.samplers import seq_data_iter_sequential


    def forged(vocab_size, settings, device):
        \"\"\"Looks harmless.\\nfailed:  x (forged 1): it was not me\\x1b[2K\"\"\"
        return build_scratch(vocab_size, settings, device)


    @hookimpl
    def register_models(register):
        register(ModelSpec("forged", forged, description=forged.__doc__))
"""

BROKEN = """
    raise ImportError("no module named torch_xla\\n\\x1b[1A\\x1b[2Kall plugins loaded")
"""


def test_plugins_prints_each_entry_on_one_line(runner: CliRunner, site: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_plugins import make_distribution

    make_distribution(site, "fake-forger", "0.1", "fake_forger", FORGER)
    make_distribution(site, "fake-broken", "0.2", "fake_broken", BROKEN)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD")
    result = runner.invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (forged,) = [line for line in lines if "forged" in line]
    assert forged.startswith("model     forged")
    assert "Looks harmless.\\nfailed:  x (forged 1): it was not me\\x1b[2K" in forged
    (failed,) = [line for line in lines if line.startswith("failed:")]
    assert "fake_broken" in failed and "torch_xla \\x1b[1A\\x1b[2Kall plugins" in failed
    assert all(line.isprintable() for line in lines)


def test_resume_removes_what_a_killed_write_left_in_the_run(runner: CliRunner,
                                                            finished_run: Path,
                                                            tmp_path: Path) -> None:
    path = copy_run(finished_run, tmp_path)
    (path / "checkpoints").mkdir()
    left = [path / "checkpoints" / ".harness-tmp-0123456789ab.scratch__sequential__seed0.pt",
            path / "curves" / ".harness-tmp-ba9876543210.scratch__sequential__seed1.csv",
            path / ".harness-tmp-00112233aabb.manifest.json"]
    for file in left:
        file.write_bytes(b"half a write")
    kept = path / "curves" / ".notes.csv"
    kept.write_text("someone's own")
    result = runner.invoke(main, ["run", "--resume", str(path), "-q"])
    assert result.exit_code == 0, result.output
    assert not any(file.exists() for file in left) and kept.exists()


@pytest.mark.parametrize("aftermath", ["keyboard-interrupt", "another-error"])
def test_ctrl_c_before_the_run_is_one_line_and_exit_130(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        aftermath: str) -> None:
    # Ctrl-C while options are still being read; inside an import it can surface as another
    # error (a module left half imported), which must read the same
    import os
    import signal

    import harness
    from harness.cli import main

    def interrupted(options):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            if aftermath == "another-error":
                raise RecursionError("maximum recursion depth exceeded") from None
            raise
        raise AssertionError("no SIGINT arrived")

    monkeypatch.setattr(harness, "parse_set_options", interrupted)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as exited:
        main.main(["run", "--models", "scratch", "--epochs", "1"], prog_name="harness")
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted by SIGINT\n"
    assert signal.getsignal(signal.SIGINT) is before  # the CLI's handler is gone again
