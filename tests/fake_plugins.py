"""Installed-looking plugin distributions made on disk, for tests of discovery and of
worker processes (which find them through sys.path / PYTHONPATH like any installed one)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness import hookimpl
from harness.plugin.contracts import ModelSpec


def make_distribution(root: Path, dist: str, version: str, module: str, source: str) -> None:
    """Write an installed-looking distribution: a module plus dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[rnn_harness]\n{module} = {module}\n",
                                           encoding="utf-8")


SLOW_SCRATCH = """
    import time

    import torch

    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec
    from harness_builtins.rnn import build_scratch


    def slow_scratch(vocab_size, settings, device):
        \"\"\"The scratch RNN, its every training step {delay} s slower: a combination that is
        still training when a faster one beside it has finished.\"\"\"
        model = build_scratch(vocab_size, settings, device)
        forward = model.forward

        def slowed(X, state):
            if model.training:
                time.sleep({delay})
            return forward(X, state)

        model.forward = slowed
        return model


    def slow_threaded(vocab_size, settings, device):
        \"\"\"slow-scratch whose output weights' gradient is scaled by the thread count: a
        model whose numbers depend on it in any mode.\"\"\"
        model = slow_scratch(vocab_size, settings, device)
        model.W_hq.register_hook(lambda grad: grad * torch.get_num_threads())
        return model


    @hookimpl
    def register_models(register):
        register(ModelSpec("slow-scratch", slow_scratch))
        register(ModelSpec("slow-threaded", slow_threaded))
"""
"""A plugin registering ``slow-scratch`` and ``slow-threaded``; ``.format(delay=seconds)``
first."""


IN_TURN = """
    import multiprocessing
    import sys
    import time
    from pathlib import Path

    from harness import hookimpl
    from harness.plugin.contracts import ModelSpec
    from harness_builtins import rnn

    RUNS = Path({runs!r})  # the --jobs run's output folder
    STARTED = Path({started!r})
    PATIENCE = 120.0  # seconds: a wait that runs out fails the test instead of hanging it


    def wait_for(condition):
        deadline = time.monotonic() + PATIENCE
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)


    def in_a_worker(device):
        \"\"\"Only a --jobs worker waits: not a serial run, not the dry run on meta.\"\"\"
        return (device.type != "meta"
                and multiprocessing.current_process().name == "harness-worker")


    def training_frame():
        \"\"\"The frame of harness.train.trainer.train the caller runs in, if any: a training
        step's, not the thread check's.\"\"\"
        frame = sys._getframe(2)
        while frame is not None and not (frame.f_code.co_name == "train" and
                                         frame.f_globals["__name__"] == "harness.train.trainer"):
            frame = frame.f_back
        return frame


    def one_recorded():
        return any(path.read_text().endswith("\\n") for path in RUNS.glob("*/records.jsonl"))


    def stays(vocab_size, settings, device):
        \"\"\"The scratch RNN; in a worker, its first training step says so (``STARTED``) and
        then waits until the other combination's record is written and, where cores are
        lent, until the driver has lent it that one's core: its first epoch runs with the
        other combination beside it, the rest after the other finished.\"\"\"
        model = rnn.build_scratch(vocab_size, settings, device)
        forward, first = model.forward, [in_a_worker(device)]

        def in_turn(X, state):
            frame = training_frame() if first[0] and model.training else None
            if frame is not None:
                first[0] = False
                STARTED.touch()
                wait_for(one_recorded)
                lent = frame.f_locals["between_epochs"]  # follow_share, bound to the share
                if lent is not None:                     # of cores the driver sets
                    wait_for(lambda: lent.args[0].value == 2)
            return forward(X, state)

        model.forward = in_turn
        return model


    def leaves(vocab_size, settings, device):
        \"\"\"build_{leaves}'s model; in a worker, it runs only once ``stays`` has begun
        training.\"\"\"
        model = rnn.build_{leaves}(vocab_size, settings, device)
        forward, wait = model.forward, in_a_worker(device)

        def in_turn(X, state):
            if wait:
                wait_for(STARTED.exists)
            return forward(X, state)

        model.forward = in_turn
        return model


    @hookimpl
    def register_models(register):
        register(ModelSpec("stays", stays))
        register(ModelSpec("leaves", leaves))
"""
"""A plugin registering ``stays`` (the scratch RNN) and ``leaves`` (``build_{leaves}``'s
model), which in --jobs workers take turns by events, not by time: ``leaves`` trains once
``stays`` has begun its first epoch, which ends only after ``leaves`` is recorded and,
where cores are lent, its core lent to ``stays``. ``.format(runs=str(output_dir),
started=str(marker_file), leaves="scratch" or "nnrnn")`` first."""


def broken_model(vocab_size, settings, device):
    """A model factory that always fails: a combination that must fail without stopping
    the run."""
    raise RuntimeError("no such layer")


class BrokenModel:
    """A plugin registering ``broken``, a model whose factory raises (:func:`broken_model`)."""

    @hookimpl
    def register_models(self, register):
        register(ModelSpec("broken", broken_model))
