import json
from pathlib import Path

import pytest

from harness import hookimpl, run
from harness.names import MAX_NAME, safe_name
from harness.plugin.manager import load_registry
from harness.results.store import RunStore, new_run_id

NAME_MAX = 255  # bytes a file name may have on ext4, XFS, btrfs, APFS, tmpfs


def test_safe_name_keeps_short_names_and_cleans_separators() -> None:
    assert safe_name("scratch") == "scratch"
    assert safe_name("../../x/y") == "x_y"
    assert safe_name("...") == "_"
    assert safe_name(safe_name("a" * 300)) == safe_name("a" * 300)  # idempotent


def test_long_names_are_cut_with_a_hash_so_they_stay_distinct() -> None:
    a, b = "x" * 299 + "a", "x" * 299 + "b"
    assert len(safe_name(a)) == MAX_NAME and len(safe_name(b)) == MAX_NAME
    assert safe_name(a) != safe_name(b)
    assert safe_name(a).startswith("x" * 100)
    assert safe_name("é" * 300).isascii() and len(safe_name("é" * 300)) <= MAX_NAME
    assert len(safe_name("y" * 300, 40)) == 40
    with pytest.raises(ValueError):
        safe_name("y", 5)


def test_a_run_id_stays_within_a_file_name() -> None:
    assert len(new_run_id("t" * 300).encode()) <= NAME_MAX
    assert new_run_id("t" * 300) != new_run_id("t" * 299 + "u")


LONG_MODEL = "m" * 300
LONG_TASK = "t" * 300


class LongNames:
    @hookimpl
    def register_models(self, register):
        from harness.plugin.contracts import ModelSpec
        from harness_builtins.rnn import build_scratch

        register(ModelSpec(LONG_MODEL, build_scratch))


def test_a_300_character_model_and_task_name_run_and_are_recorded(small_task: Path,
                                                                   tmp_path: Path) -> None:
    task = tmp_path / "long.toml"
    task.write_text(small_task.read_text().replace('name = "small"', f'name = "{LONG_TASK}"'))
    registry = load_registry(autoload=False, extra=[LongNames()])
    result = run(models=[LONG_MODEL], samplers=["sequential"], task=str(task),
                 output_dir=tmp_path / "out", quiet=True, registry=registry, epochs=1,
                 save_checkpoints=True)
    assert result.status == "complete"
    (record,) = RunStore.open(result.path).records()
    assert record.model == LONG_MODEL and record.ok and record.checkpoint
    assert json.loads((result.path / "manifest.json").read_text())["settings"]["task"] \
        == LONG_TASK
    names = [result.path, *result.path.rglob("*")]
    assert all(len(p.name.encode()) <= NAME_MAX for p in names)
    assert (result.path / record.checkpoint).is_file()
    assert len(list((result.path / "curves").iterdir())) == 1
    charts = sorted(p.name for p in (result.path / "plots").iterdir())
    assert len(charts) == 2 and all(name.endswith(".png") for name in charts)
    report = (result.path / "report.md").read_text()
    assert all(f"(plots/{name})" in report for name in charts)
