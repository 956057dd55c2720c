"""Installed-looking plugin distributions made on disk, for tests of discovery and of
worker processes (which find them through sys.path / PYTHONPATH like any installed one)."""

from __future__ import annotations

import textwrap
from pathlib import Path


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
