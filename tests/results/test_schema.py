"""Records and manifests: typed in the code; committed run directories load and write back
the same JSON, but for the legacy key ``samples``, written back as ``generated``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.metrics import D2L_NAMES, METRICS, NAMES, metric
from harness.results.schema import LEGACY_GENERATED, Manifest, Record, RunSettings

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "results").glob("reference-*/*/"))


def test_every_metric_has_a_label_digits_and_a_way_to_show_a_change() -> None:
    assert NAMES[:3] == D2L_NAMES == ("train_ppl", "valid_ppl", "tokens_per_sec")
    assert set(NAMES[3:]) == {"train_bpc", "valid_bpc", "test_bpc", "test_ppl",
                              "tokens_to_target", "seconds_to_target"}
    for m in METRICS:
        assert m.label and m.digits >= 0 and m.change in ("difference", "ratio")
    assert metric("tokens_per_sec").change == "ratio"
    assert not metric("tokens_per_sec").lower_is_better
    with pytest.raises(KeyError, match="unknown metric 'bpc'; choose from: train_ppl"):
        metric("bpc")


def renamed_legacy_key(stored: dict) -> dict:
    """``stored`` as the current writer writes it: ``samples`` renamed ``generated``."""
    return {("generated" if k == LEGACY_GENERATED else k): v for k, v in stored.items()}


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_records_load_and_write_back_the_same_json(run_dir: Path) -> None:
    for line in (run_dir / "records.jsonl").read_text(encoding="utf-8").splitlines():
        stored = json.loads(line)
        record = Record.from_json(stored)
        assert record.metric("train_ppl") == stored["train_ppl"]
        assert record.generated == stored.get(LEGACY_GENERATED, stored.get("generated", {}))
        assert LEGACY_GENERATED not in record.extra
        assert record.to_json() == renamed_legacy_key(stored)


def test_a_legacy_record_loads_its_text_under_generated() -> None:
    legacy = {"key": "k", "model": "m", "sampler": "s", "seed": 0,
              "samples": {"the": "the end"}}
    record = Record.from_json(legacy)
    assert record.generated == {"the": "the end"} and record.extra == {}
    assert record.to_json()["generated"] == {"the": "the end"}
    assert "samples" not in record.to_json()


def test_a_new_record_round_trips_exactly() -> None:
    record = Record(key="k", model="m", sampler="s", seed=0, settings={"lr": 0.5},
                    metrics={"train_ppl": 1.5, "valid_ppl": None, "tokens_per_sec": 10.0},
                    generated={"the": "the end"}, checkpoint="checkpoints/k.pt")
    stored = json.loads(json.dumps(record.to_json()))
    assert stored["generated"] == {"the": "the end"} and "samples" not in stored
    assert Record.from_json(stored) == record
    assert Record.from_json(stored).to_json() == stored


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_manifests_load_and_write_back_the_same_json(run_dir: Path) -> None:
    stored = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest = Manifest.from_json(stored)
    assert f"-{manifest.settings.task}-" in run_dir.name
    assert manifest.run_id == run_dir.name
    assert manifest.to_json() == stored


def test_unknown_fields_are_kept_and_metrics_typed() -> None:
    record = Record.from_json({"key": "k", "model": "m", "sampler": "s", "seed": 1,
                               "train_ppl": 2, "valid_ppl": "x", "from_the_future": [1]})
    assert record.metrics == {"train_ppl": 2.0, "valid_ppl": None, "tokens_per_sec": None}
    assert record.extra == {"from_the_future": [1]}
    assert record.to_json()["from_the_future"] == [1]
    assert record.label == "m/s/seed1"


@pytest.mark.parametrize("data", [
    {"model": "m", "sampler": "s", "seed": 0},
    {"key": "k", "model": "m", "sampler": "s", "seed": "0"},
    {"key": "k", "model": "m", "sampler": "s", "seed": True},
    {"key": "k", "model": "m", "sampler": "s", "seed": 0, "settings": [1]},
])
def test_a_record_without_its_identity_is_refused(data: dict) -> None:
    with pytest.raises(ValueError):
        Record.from_json(data)


@pytest.mark.parametrize("value", [10**309, -10**400])
def test_a_metric_too_large_for_a_float_is_refused(value: int) -> None:
    # JSON integers are unbounded; float() of these raises OverflowError, which the store
    # would not take for a corrupt line.
    with pytest.raises(ValueError, match="a metric is an integer too large for a float"):
        Record.from_json({"key": "k", "model": "m", "sampler": "s", "seed": 0,
                          "valid_ppl": value})


def test_a_manifest_of_the_wrong_shape_is_refused() -> None:
    for data in ([], {"settings": []}, {"plan": 3}):
        with pytest.raises(ValueError):
            Manifest.from_json(data)


def test_run_settings_round_trip() -> None:
    settings = RunSettings(task="t", models=("a",), samplers=("s",), seeds=(0, 1),
                           grid={"lr": (0.5, 1.0)}, device="cpu", recipe={"epochs": 2},
                           corpus={"sha1": "x"})
    assert RunSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings
