from pathlib import Path

from harness.report import render_report, write_report
from harness.store import RunStore


def make_run(tmp_path: Path) -> RunStore:
    store = RunStore.create(tmp_path, {
        "status": "partial",
        "settings": {"task": "t", "models": ["m"], "samplers": ["s"], "seeds": [0],
                     "recipe": {"epochs": 2}, "corpus": {"sha1": "abc"}},
        "environment": {"torch": "x", "plugins": [{"plugin": "p", "distribution": "d",
                                                   "version": "1"}]},
    })
    store.append_record({"key": "m__s__seed0", "model": "m", "sampler": "s", "seed": 0,
                         "status": "ok", "train_ppl": 1.25, "valid_ppl": 2.5,
                         "tokens_per_sec": 1234.4, "wall_seconds": 3.0, "num_params": 10,
                         "samples": {"the": "the end"}},
                        [{"epoch": 1, "train_ppl": 3.0, "tokens_per_sec": 1.0, "valid_ppl": None},
                         {"epoch": 2, "train_ppl": 1.25, "tokens_per_sec": 1.0, "valid_ppl": 2.5}])
    store.append_record({"key": "m2__s__seed0", "model": "m2", "sampler": "s", "seed": 0,
                         "status": "failed", "error": "boom"})
    return store


def test_report_shows_settings_results_samples_and_curves(tmp_path: Path) -> None:
    text = render_report(make_run(tmp_path))
    assert "| epochs" in text and "abc" in text and "p (d 1)" in text
    assert "1.250" in text and "2.500" in text and "1234" in text
    assert "failed" in text
    assert "the end" in text
    assert "m/s/0 train" in text and "3.000" in text


def test_report_is_regenerated_identically_from_the_store(tmp_path: Path) -> None:
    store = make_run(tmp_path)
    first = write_report(store).read_text()
    assert write_report(RunStore.open(store.path)).read_text() == first
