"""The package as a user's plugin: found through its entry point, run by the unchanged CLI."""

import json
from pathlib import Path

import harness_transformer
from harness import load_registry
from harness.testing import invoke_cli


def test_entry_point_registers_the_model_with_its_distribution() -> None:
    registry = load_registry(autoload=True)
    assert registry.model("transformer").factory is harness_transformer.TRANSFORMER.factory
    provider = registry.models.providers["transformer"]
    assert (provider.plugin, provider.distribution) == ("transformer", "harness-transformer")
    assert not registry.failures


def test_not_a_builtin_only_the_entry_point_or_an_explicit_load_brings_it() -> None:
    assert "transformer" not in load_registry(autoload=False).models.names()
    explicit = load_registry(autoload=False, extra=[harness_transformer])
    assert "transformer" in explicit.models.names()


def test_harness_plugins_lists_it() -> None:
    result = invoke_cli(["plugins"], autoload=True)
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.split()[1:2] == ["transformer"])
    assert "causal Transformer" in line and "harness-transformer 0.1.0" in line


def test_harness_run_trains_it_next_to_the_scratch_rnn(tiny_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke_cli([
        "run", "--task", str(tiny_task), "--models", "scratch,transformer",
        "--samplers", "sequential", "--epochs", "2", "--hiddens", "32", "--max-tokens", "600",
        "-o", str(out), "-q"], autoload=True)
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    records = [json.loads(l) for l in (run / "records.jsonl").read_text().splitlines()]
    assert {(r["model"], r["sampler"]) for r in records} == {
        ("scratch", "sequential"), ("transformer", "sequential")}
    for r in records:
        assert r["status"] == "ok" and r["generated"]["the time"].startswith("the time")
