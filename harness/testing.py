"""Helpers for plugin authors: tiny data, a brief training run, and contract checks.

A plugin may import of harness only the root (``harness``), :mod:`harness.plugin.contracts`
and this module; what a plugin's tests need of the harness's internals is here, so those
internals can move without breaking a plugin. A model plugin's tests might read::

    assert check_model_spec(MY_SPEC)  # raises AssertionError naming what is broken
    sampler = harness.load_registry().sampler("sequential")
    result = brief_training(model=tiny_model(MY_SPEC), sampler=sampler)
    assert result.curve[-1].train_ppl < result.curve[0].train_ppl

Nothing here needs a network, a file or a GPU.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import torch
from click.testing import CliRunner, Result
from torch import Tensor, nn
from torch.nn import functional as F

from harness.data.dataset import Dataset
from harness.data.text import Vocab, preprocess, tokenize
from harness.machine.determinism import VARIABLE, make_thread_invariant, thread_dependent_parameters
from harness.plan.fits import check_fits
from harness.plan.recipe import Recipe
from harness.plugin.contracts import (LanguageModel, ModelSettings, ModelSpec, SamplerSpec,
                                      State, next_state)
from harness.plugin.manager import AUTOLOAD_ENV
from harness.train.trainer import TrainResult, seed_everything, train

__all__ = [
    "TINY_PREFIX", "TINY_RECIPE", "brief_training", "check_model_spec", "check_sampler_spec",
    "invoke_cli", "make_thread_invariant", "strict_mode_thread_dependence",
    "thread_check_possible", "thread_dependent_parameters", "tiny_corpus", "tiny_dataset",
    "tiny_model", "write_tiny_task",
]

CPU = torch.device("cpu")

TINY_RECIPE = Recipe(epochs=3, batch_size=4, num_steps=8, num_hiddens=32, max_tokens=1500,
                     valid_tokens=300, eval_every=1)
"""A recipe that trains a small model on :func:`tiny_dataset` fast enough for a unit test."""

TINY_PREFIX = "the time"
"""The prefix :func:`brief_training` generates from (its characters are all in the corpus)."""


# --- tiny data ---------------------------------------------------------------------------

def tiny_corpus() -> str:
    """The raw text of the tiny corpus: 40 lines about a time traveller and a fox, about
    2,600 characters once preprocessed, so a model's loss visibly falls in a few epochs."""
    return "\n".join(
        f"The Time Traveller, line {i}: a quick brown fox jumps over the lazy dog!"
        for i in range(40))


def tiny_dataset(*, text: str | None = None, tokenizer: str = "char",
                 train_tokens: int = TINY_RECIPE.max_tokens,
                 valid_tokens: int = TINY_RECIPE.valid_tokens) -> Dataset:
    """``text`` (:func:`tiny_corpus` by default) preprocessed, tokenised and split as the
    harness does a task's corpus: the first ``train_tokens`` tokens train, the next
    ``valid_tokens`` validate. Built in memory: no file, no download."""
    text = tiny_corpus() if text is None else text
    lines = [preprocess(line).strip() for line in text.splitlines()]
    tokens = [t for line in tokenize(lines, tokenizer) for t in line]
    vocab = Vocab(tokens)
    ids = vocab.encode(tokens)
    return Dataset(vocab, ids[:train_tokens], ids[train_tokens: train_tokens + valid_tokens],
                   Path("<tiny corpus>"), hashlib.sha1(text.encode("utf-8")).hexdigest(),
                   tokenizer)


def write_tiny_task(folder: Path) -> Path:
    """Write the tiny corpus and a task file over it (with :data:`TINY_RECIPE`) into
    ``folder``; return the task file's path, for ``harness run --task PATH``."""
    (folder / "tiny.txt").write_text(tiny_corpus(), encoding="utf-8")
    recipe = "".join(f"{name} = {getattr(TINY_RECIPE, name)}\n" for name in (
        "epochs", "batch_size", "num_steps", "num_hiddens", "max_tokens", "valid_tokens",
        "eval_every"))
    path = folder / "tiny.toml"
    path.write_text(f'name = "tiny"\ntokenizer = "char"\n[corpus]\npath = "tiny.txt"\n'
                    f'[recipe]\n{recipe}[generate]\nprefixes = ["{TINY_PREFIX}"]\n'
                    "num_preds = 10\n", encoding="utf-8")
    return path


# --- a brief training run ----------------------------------------------------------------

def tiny_model(spec: ModelSpec, *, dataset: Dataset | None = None,
               settings: ModelSettings | None = None, seed: int = 0,
               device: torch.device = CPU) -> nn.Module:
    """``spec``'s model for ``dataset``'s vocabulary (the tiny one by default), built with
    ``settings`` (:data:`TINY_RECIPE`'s by default) after seeding torch with ``seed``."""
    dataset = tiny_dataset() if dataset is None else dataset
    torch.manual_seed(seed)
    return spec.factory(len(dataset.vocab), settings or TINY_RECIPE.model_settings(), device)


def brief_training(*, model: nn.Module, sampler: SamplerSpec, dataset: Dataset | None = None,
                   recipe: Recipe | None = None, seed: int = 0,
                   device: torch.device = CPU) -> TrainResult:
    """Train ``model`` with the harness's own trainer for a few epochs (``recipe``,
    :data:`TINY_RECIPE` by default) on ``dataset`` (:func:`tiny_dataset` by default), and
    return its result: ``status``, the per-epoch ``curve`` of perplexities, and greedy
    text generated from :data:`TINY_PREFIX` in ``generated``. ``model`` must have been
    built for the dataset's vocabulary (:func:`tiny_model`)."""
    dataset = tiny_dataset() if dataset is None else dataset
    recipe = TINY_RECIPE if recipe is None else recipe
    recipe.validate()
    check_fits(dataset, recipe)
    rng = seed_everything(seed)
    return train(model, sampler, data=dataset, recipe=recipe, device=device, rng=rng,
                 prefixes=(TINY_PREFIX,), num_preds=10, quiet=True)


def invoke_cli(args: Sequence[str], *, autoload: bool = True) -> Result:
    """Run ``harness ARGS`` in this process (click's ``CliRunner``) and return its result
    (``exit_code``, ``output``). ``autoload``: installed plugins load, as for a user, even
    where the test session switched autoloading off."""
    from harness.cli import main  # the command line, only when a test runs it

    env = {AUTOLOAD_ENV: None if autoload else "1"}
    return CliRunner().invoke(main, list(args), env=env)


# --- the model contract ------------------------------------------------------------------

def check_model_spec(spec: ModelSpec, *, vocab_size: int = 20,
                     settings: ModelSettings | None = None, batch_size: int = 3,
                     num_steps: int = 5, device: torch.device = CPU, seed: int = 0) -> bool:
    """Build ``spec``'s model and check it keeps the :class:`LanguageModel` contract the
    trainer relies on; raise ``AssertionError`` naming the first thing that is broken.

    Checked: it is an ``nn.Module`` on ``device`` with trainable parameters; ``begin_state``
    gives a state for ``batch_size`` sequences (and for 1, as generation uses); ``forward``
    on ``(batch, steps)`` token ids returns float logits ``(steps * batch, vocab)`` in
    time-major order (row ``t * batch + b`` belongs to sequence ``b``) and a state that
    ``detach_state`` can cut and the next call accepts; gradients reach every trainable
    parameter. Returns False, checking nothing more, when the model refuses ``settings``
    with ``ValueError`` (allowed: the harness reports it before training); True otherwise.
    torch's global random state is left as it was.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 to tell time-major logits from "
                         "batch-major ones")
    settings = settings or ModelSettings(num_hiddens=16)
    check = _ModelCheck(spec.name, vocab_size, batch_size, num_steps, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = spec.factory(vocab_size, settings, device)
            check.built(model)
            model.train()
            first = model(check.tokens(), model.begin_state(batch_size, device))
        except ValueError:
            return False
        check.training_steps(model, first)
        check.time_major(model)
        check.generation(model)
    return True


class _ModelCheck:
    """The steps of :func:`check_model_spec`, sharing the model's name and the shapes."""

    def __init__(self, name: str, vocab_size: int, batch_size: int, num_steps: int,
                 device: torch.device) -> None:
        self.name, self.V, self.B, self.T, self.device = (name, vocab_size, batch_size,
                                                          num_steps, device)
        self.generator = torch.Generator().manual_seed(0)

    def fail(self, problem: str) -> NoReturn:
        raise AssertionError(f"model {self.name!r}: {problem}")

    def tokens(self) -> Tensor:
        """Random token ids ``(B, T)``, other ones each call."""
        return torch.randint(0, self.V, (self.B, self.T), generator=self.generator
                             ).to(self.device)

    def built(self, model: object) -> None:
        if not isinstance(model, nn.Module):
            self.fail(f"the factory returned a {type(model).__name__}, not an nn.Module")
        if not isinstance(model, LanguageModel):
            self.fail("it has no begin_state(batch_size, device)")
        if not any(p.requires_grad for p in model.parameters()):
            self.fail("it has no trainable parameters")
        elsewhere = [n for n, p in model.named_parameters() if p.device.type != self.device.type]
        if elsewhere:
            self.fail(f"parameter(s) {', '.join(elsewhere)} are not on {self.device}: the "
                      "factory must build the model on the device it is given")

    def logits(self, logits: object, rows: int, call: str) -> None:
        if not isinstance(logits, Tensor):
            self.fail(f"{call}: forward must return (logits, state), got logits of type "
                      f"{type(logits).__name__}")
        if tuple(logits.shape) != (rows, self.V):
            self.fail(f"{call}: logits of shape {tuple(logits.shape)}, expected "
                      f"(steps * batch, vocab) = ({rows}, {self.V})")
        if not logits.is_floating_point():
            self.fail(f"{call}: logits of dtype {logits.dtype}, not floating point")

    def carried(self, model: LanguageModel, state: State, batch_size: int) -> State:
        """``state`` as the trainer carries it to the next minibatch (detached)."""
        try:
            carried = next_state(model, state, carries=True, batch_size=batch_size,
                                 device=self.device)
        except TypeError:
            self.fail(f"its state is a {type(state).__name__}: use None, a tensor or a "
                      "tuple of tensors, which detach_state can cut from the graph")
        if any(t.grad_fn is not None for t in _tensors(carried)):
            self.fail("detach_state left its state attached to the graph: keep the state's "
                      "tensors in a tuple (not in an object detach_state cannot see into)")
        return carried

    def training_steps(self, model: nn.Module, first: object) -> None:
        """Two minibatches as the trainer runs them, the state carried; one backward."""
        if not (isinstance(first, tuple) and len(first) == 2):
            self.fail("forward must return a pair (logits, state)")
        logits, state = first
        self.logits(logits, self.T * self.B, "first minibatch")
        carried = self.carried(model, state, self.B)
        try:
            second, _ = model(self.tokens(), carried)
        except Exception as error:  # noqa: BLE001 - named in the failure
            self.fail(f"forward refused the state it returned ({type(error).__name__}: {error})")
        self.logits(second, self.T * self.B, "second minibatch (state carried)")
        targets = torch.randint(0, self.V, (2, self.T * self.B), generator=self.generator)
        loss = (F.cross_entropy(logits.float(), targets[0].to(self.device))
                + F.cross_entropy(second.float(), targets[1].to(self.device)))
        model.zero_grad(set_to_none=True)
        loss.backward()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in params if p.grad is None]
        if missing:
            self.fail(f"no gradient reaches parameter(s) {', '.join(missing)}: each trainable "
                      "parameter must take part in forward (or set requires_grad=False)")
        broken = [n for n, p in params if not torch.isfinite(p.grad).all()]
        if broken:
            self.fail(f"non-finite gradient for parameter(s) {', '.join(broken)}")

    @torch.no_grad()
    def time_major(self, model: nn.Module) -> None:
        """Change sequence 1's tokens: only the rows ``t * B + 1`` may change."""
        model.eval()
        X = self.tokens()
        changed_X = X.clone()
        changed_X[1] = (changed_X[1] + 1) % self.V
        before, _ = model(X, model.begin_state(self.B, self.device))
        after, _ = model(changed_X, model.begin_state(self.B, self.device))
        rows = {r for r in range(self.T * self.B)
                if not torch.allclose(before[r], after[r], rtol=1e-5, atol=1e-7)}
        if not rows:
            self.fail("its logits do not depend on the input tokens")
        foreign = sorted(r for r in rows if r % self.B != 1)
        if foreign:
            self.fail(f"changing the tokens of sequence 1 changed logits row(s) {foreign}, "
                      "which belong to other sequences: logits must be time-major, row "
                      "t * batch + b predicting Y[b, t] (batch-major rows? a reshape "
                      "without the transpose?)")

    @torch.no_grad()
    def generation(self, model: nn.Module) -> None:
        """One token of one sequence, as greedy generation feeds it."""
        model.eval()
        state = model.begin_state(1, self.device)
        X = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        for call in ("generation, first token", "generation, next token"):
            logits, state = model(X, state)
            self.logits(logits, 1, call)
            state = self.carried(model, state, 1)


def _tensors(state: State) -> Iterator[Tensor]:
    """The tensors of a state (``None``, a tensor, nested tuples or lists)."""
    if isinstance(state, Tensor):
        yield state
    elif isinstance(state, (tuple, list)):
        for part in state:
            yield from _tensors(part)


# --- the sampler contract ----------------------------------------------------------------

def check_sampler_spec(spec: SamplerSpec, *, batch_size: int = 4, num_steps: int = 5,
                       corpus_length: int = 1000, seed: int = 0) -> None:
    """Check that ``spec``'s sampler keeps the contract the trainer relies on; raise
    ``AssertionError`` naming the first thing that is broken.

    Over the corpus ``0, 1, ..., corpus_length - 1`` (a 1-D int64 tensor, as the trainer
    passes it): it yields at least one minibatch; every ``X`` and ``Y`` is ``(batch_size,
    num_steps)`` of int64 token ids from the corpus, ``Y`` the tokens right after ``X``'s;
    with ``carries_state``, row ``b`` of each minibatch continues row ``b`` of the one
    before; and the same seed gives the same minibatches.
    """
    def fail(problem: str) -> NoReturn:
        raise AssertionError(f"sampler {spec.name!r}: {problem}")

    batches = _draw(spec, corpus_length, batch_size, num_steps, seed)
    if not batches:
        fail(f"no minibatch of {batch_size} x {num_steps} from {corpus_length} tokens")
    for i, (X, Y) in enumerate(batches):
        if not (isinstance(X, Tensor) and isinstance(Y, Tensor)):
            fail(f"minibatch {i}: X and Y must be tensors")
        if tuple(X.shape) != (batch_size, num_steps) or tuple(Y.shape) != X.shape:
            fail(f"minibatch {i}: X {tuple(X.shape)} and Y {tuple(Y.shape)}, expected "
                 f"(batch_size, num_steps) = ({batch_size}, {num_steps}) each")
        if X.dtype != torch.long or Y.dtype != torch.long:
            fail(f"minibatch {i}: token ids of dtype {X.dtype} / {Y.dtype}, not torch.long")
        if X.min() < 0 or Y.max() >= corpus_length:
            fail(f"minibatch {i}: token ids that are not in the corpus")
        if not torch.equal(Y, X + 1):
            fail(f"minibatch {i}: Y is not X shifted by one token (Y[b, t] must be the "
                 "token after X[b, t])")
    if spec.carries_state:
        for i, ((X0, _), (X1, _)) in enumerate(zip(batches, batches[1:])):
            if not torch.equal(X1[:, 0], X0[:, -1] + 1):
                fail(f"carries_state is True, but row b of minibatch {i + 1} does not "
                     f"continue row b of minibatch {i}")
    again = _draw(spec, corpus_length, batch_size, num_steps, seed)
    if len(again) != len(batches) or not all(
            torch.equal(X, X2) and torch.equal(Y, Y2) for (X, Y), (X2, Y2) in zip(batches, again)):
        fail("the same seed gave other minibatches: draw from the rng it is given")


def _draw(spec: SamplerSpec, corpus_length: int, batch_size: int, num_steps: int,
          seed: int) -> list[tuple[Tensor, Tensor]]:
    """All minibatches of one epoch, with torch and ``random`` seeded as the harness seeds
    them (their global states restored afterwards)."""
    saved = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            rng = seed_everything(seed)
            corpus = torch.arange(corpus_length)
            return list(spec.batches(corpus, batch_size, num_steps, rng))
    finally:
        random.setstate(saved)


# --- thread-count independence (--reproducible) ------------------------------------------

_STRICT_CHILD = """
import base64, json, pickle, sys
import torch
from harness.machine.determinism import make_thread_invariant, thread_dependent_parameters
make_thread_invariant()  # before this process's first matrix product
spec, settings, V, B, T, threads, seed = pickle.loads(base64.b64decode(sys.stdin.read()))
torch.manual_seed(seed)
model = spec.factory(V, settings, torch.device("cpu"))
X, Y = torch.randint(0, V, (2, B, T), generator=torch.Generator().manual_seed(seed))
found = thread_dependent_parameters(model, X=X, Y=Y, threads=threads)
print("thread-dependent: " + json.dumps(found))
"""


def thread_check_possible() -> bool:
    """Whether :func:`strict_mode_thread_dependence` can tell anything here: torch is built
    with oneMKL and the machine has at least 2 cores."""
    return torch.backends.mkl.is_available() and (os.cpu_count() or 1) >= 2


def strict_mode_thread_dependence(spec: ModelSpec, *, settings: ModelSettings,
                                  vocab_size: int = 28, batch_size: int = 32,
                                  num_steps: int = 35, threads: int = 2, seed: int = 0,
                                  timeout: float = 300) -> list[str]:
    """The parameters of ``spec``'s model whose gradient, for one training step, has other
    bits on ``threads`` threads than on 1 under ``harness run --reproducible``: empty when
    the model keeps that mode's promise.

    oneMKL reads its strict mode before a process's first matrix product, so this runs
    :func:`thread_dependent_parameters` in a fresh process, the model built with
    ``settings`` (``reproducible`` set). ``spec`` travels by pickle, so its factory must be
    importable. Raises ``RuntimeError`` with the process's stderr if it fails.
    """
    payload = pickle.dumps((spec, dataclasses.replace(settings, reproducible=True), vocab_size,
                            batch_size, num_steps, threads, seed))
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run([sys.executable, "-c", _STRICT_CHILD],
                          input=base64.b64encode(payload).decode("ascii"),
                          capture_output=True, text=True, timeout=timeout, env=env)
    found = [line for line in done.stdout.splitlines() if line.startswith("thread-dependent: ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"the thread check of model {spec.name!r} failed:\n{done.stderr}")
    return list(json.loads(found[-1].split(": ", 1)[1]))
