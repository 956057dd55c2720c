"""harness-transformer: a small causal Transformer language model for rnn-harness.

Installed, this module is found through its entry point in the ``rnn_harness`` group (see
``pyproject.toml``) and registers the model ``transformer``. It uses only the harness's
public plugin API: the ``hookimpl`` marker and :mod:`harness.plugin.contracts`. The model is in
:mod:`harness_transformer.model`, whose docstring explains how a stateless model serves the
contract's state (its state is its context window of token ids).
"""

from __future__ import annotations

from collections.abc import Callable

from harness import hookimpl
from harness.plugin.contracts import ModelOption, ModelSpec
from harness_transformer.model import MAX_LEN, CausalTransformer, training_flops

TRANSFORMER = ModelSpec(
    "transformer", CausalTransformer,
    "causal Transformer LM (GPT-style, learned positions); state: its context window",
    options=(
        ModelOption("heads", int, 0, "attention heads; 0: about one per 64 channels"),
        ModelOption("context", int, MAX_LEN, "the most tokens one forward pass attends "
                    "over (position embeddings)"),
    ),
    flops_per_token=training_flops,
)


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(TRANSFORMER)
