"""The built-in observers (``--track``): a run exported to TensorBoard or MLflow.

- ``tensorboard``: event files under ``<run_dir>/tensorboard/<combination label>/``
  (``scratch/sequential/seed0``, each part made file-name-safe), one folder per
  combination, so TensorBoard shows each as a run of its own. Scalars per epoch (d2l's
  task; step: the epoch) or per validation (a held-out task; step: training tokens),
  named as the curve's columns (``train_ppl``, ``valid_bpc``, ``tokens_per_sec``,
  ``lr``...); the record's metrics as ``result/<metric>`` and, with the combination's
  settings, in the HParams tab; the record as Markdown text (tag ``record``).
  View: ``tensorboard --logdir <run_dir>/tensorboard``.
- ``mlflow``: one MLflow run per combination, named by its label, in the experiment
  ``MLFLOW_EXPERIMENT_NAME`` (default ``harness-<task>``) of ``MLFLOW_TRACKING_URI``
  when that is set (the user's own tracker), else of a local file store,
  ``<run_dir>/mlruns``. Params: the recipe with the combination's settings, model,
  sampler and seed; metrics: the curve's columns with step = epoch or training tokens,
  and the record's metrics as ``result/<metric>``; tags ``harness.*``: run directory,
  run id, task, status, model, sampler, seed, key (and the error of a failed one).

Why a file store: it is the one store MLflow writes without a server with the
``mlflow-skinny`` the ``mlflow`` extra installs (a ``sqlite:`` store needs SQLAlchemy and
Alembic, which come with the full ``mlflow``). MLflow 3 keeps the file store in
maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this
observer sets for its own local store only; set it too to read the store
(``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <run_dir>/mlruns``).

Each library is imported when a run that asks for it starts; ``--track`` refuses a
tracker whose library is not installed before the run starts. Values that were not
measured (None) or are not finite (a diverged epoch) are left out.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.plugin.contracts import Observer, ObserverSpec

MLFLOW_BATCH = 100
"""Params, tags or metrics per MLflow ``log_batch`` call (its limits: 100 params, 100
tags, 1000 metrics)."""


def numbers(point: Mapping[str, Any], *, skip: str = "") -> dict[str, float]:
    """The finite numbers of a curve point or metrics mapping, except ``skip`` (the step)."""
    return {k: float(v) for k, v in point.items()
            if k != skip and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def settings_of(manifest: Mapping[str, Any], record: Any) -> dict[str, Any]:
    """What a combination ran with: the run's recipe, changed by the combination's
    settings (its ``--set`` point), with its model, sampler and seed."""
    recipe = dict((manifest.get("settings") or {}).get("recipe") or {})
    return {**recipe, **dict(record.settings), "model": record.model,
            "sampler": record.sampler, "seed": record.seed}


def label_path(label: str) -> Path:
    """``scratch/sequential/lr=0.5/seed0`` as a relative folder, each part file-name-safe."""
    parts = [re.sub(r"[^A-Za-z0-9._=+-]+", "_", part).strip(".") or "_"
             for part in label.split("/")]
    return Path(*parts)


def last_step(curve: Sequence[Mapping[str, Any]], key: str) -> int:
    """The step of the curve's last point (0 for an empty curve)."""
    values = [row.get(key) for row in curve]
    return int(values[-1]) if values and isinstance(values[-1], (int, float)) else 0


def record_markdown(record: Any, settings: Mapping[str, Any]) -> str:
    """The record as Markdown: status, error, metrics, settings, generated text."""
    lines = [f"**{record.label}**: {record.status}", ""]
    if record.error:
        lines += [f"error: `{record.error}`", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.6g} |" for k, v in numbers(record.metrics).items()]
    lines += ["", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in settings.items()]
    for prefix, text in dict(record.generated).items():
        lines += ["", f"generated from `{prefix}`:", "", "    " + text.replace("\n", " ")]
    return "\n".join(lines)


class TensorBoardObserver(Observer):
    """Writes TensorBoard event files, one folder per combination (see the module)."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.manifest: Mapping[str, Any] = {}
        self.writers: dict[str, Any] = {}

    def run_started(self, run_dir: Path, manifest: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs tensorboard installed

        self.writer_class = SummaryWriter
        self.root, self.manifest = Path(run_dir) / "tensorboard", manifest

    def writer(self, record: Any) -> Any:
        if record.key not in self.writers:
            folder = self.root / label_path(record.label)  # type: ignore[operator]
            self.writers[record.key] = self.writer_class(log_dir=str(folder))
        return self.writers[record.key]

    def epoch(self, record: Any, point: Mapping[str, Any]) -> None:
        self.scalars(record, point, step="epoch")

    def evaluation(self, record: Any, row: Mapping[str, Any]) -> None:
        self.scalars(record, row, step="tokens")

    def scalars(self, record: Any, point: Mapping[str, Any], *, step: str) -> None:
        writer = self.writer(record)
        for name, value in numbers(point, skip=step).items():
            writer.add_scalar(name, value, int(point[step]))

    def record(self, record: Any, curve: Sequence[Mapping[str, Any]]) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self.writer(record)
        step = last_step(curve, "tokens" if curve and "tokens" in curve[0] else "epoch")
        settings = settings_of(self.manifest, record)
        results = {f"result/{k}": v for k, v in numbers(record.metrics).items()}
        values = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                  for k, v in {**settings, "status": record.status}.items() if v is not None}
        for summary in hparams(values, results):
            writer.file_writer.add_summary(summary, step)
        for name, value in results.items():
            writer.add_scalar(name, value, step)
        writer.add_text("record", record_markdown(record, settings), step)
        writer.close()
        del self.writers[record.key]

    def run_finished(self, status: str) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


@contextlib.contextmanager
def file_store_allowed(allowed: bool) -> Iterator[None]:
    """MLflow's opt-in to its file store (``MLFLOW_ALLOW_FILE_STORE``) while the block
    runs, where ``allowed`` (the local store this observer chose), and unless the user
    set it already; as it was afterwards."""
    key = "MLFLOW_ALLOW_FILE_STORE"
    if not allowed or key in os.environ:
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def millis(stamp: str | None) -> int:
    """An ISO time (a record's ``started``, ``finished``) in ms since the epoch; now if
    there is none."""
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return int(time.time() * 1000)


class MlflowObserver(Observer):
    """Logs one MLflow run per combination (see the module). A combination's MLflow run
    is made, filled and ended when its record arrives, in a few batched calls."""

    def __init__(self) -> None:
        self.pending: dict[str, list[Any]] = {}

    def run_started(self, run_dir: Path, manifest: Mapping[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        given = os.environ.get("MLFLOW_TRACKING_URI")
        self.uri = given or (Path(run_dir) / "mlruns").absolute().as_uri()
        self.local = not given
        self.run_dir, self.manifest = Path(run_dir), manifest
        with file_store_allowed(self.local):
            self.client = MlflowClient(tracking_uri=self.uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or \
                f"harness-{(manifest.get('settings') or {}).get('task') or 'run'}"
            experiment = self.client.get_experiment_by_name(name)
            self.experiment = experiment.experiment_id if experiment is not None \
                else self.client.create_experiment(name)

    def epoch(self, record: Any, point: Mapping[str, Any]) -> None:
        self.collect(record, point, step="epoch")

    def evaluation(self, record: Any, row: Mapping[str, Any]) -> None:
        self.collect(record, row, step="tokens")

    def collect(self, record: Any, point: Mapping[str, Any], *, step: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.setdefault(record.key, []).extend(
            Metric(name, value, now, int(point[step]))
            for name, value in numbers(point, skip=step).items())

    def record(self, record: Any, curve: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        step = last_step(curve, "tokens" if curve and "tokens" in curve[0] else "epoch")
        now = int(time.time() * 1000)
        metrics = self.pending.pop(record.key, []) + [
            Metric(f"result/{k}", v, now, step) for k, v in numbers(record.metrics).items()]
        params = [Param(k, str(v)[:6000]) for k, v in settings_of(self.manifest, record).items()]
        tags = {"harness.run_dir": str(self.run_dir.absolute()),
                "harness.run_id": str(self.manifest.get("run_id", "")),
                "harness.task": str((self.manifest.get("settings") or {}).get("task", "")),
                "harness.status": record.status, "harness.model": record.model,
                "harness.sampler": record.sampler, "harness.seed": str(record.seed),
                "harness.key": record.key}
        if record.error:
            tags["harness.error"] = record.error[:5000]
        with file_store_allowed(self.local):
            run = self.client.create_run(self.experiment, start_time=millis(record.started),
                                         tags=tags, run_name=record.label)
            run_id = run.info.run_id
            for i in range(0, len(params), MLFLOW_BATCH):
                self.client.log_batch(run_id, params=params[i:i + MLFLOW_BATCH])
            for i in range(0, len(metrics), 10 * MLFLOW_BATCH):
                self.client.log_batch(run_id, metrics=metrics[i:i + 10 * MLFLOW_BATCH])
            self.client.set_terminated(run_id, "FINISHED" if record.ok else "FAILED",
                                       end_time=millis(record.finished))

    def run_finished(self, status: str) -> None:
        self.pending.clear()


@hookimpl
def register_observers(register):
    register(ObserverSpec(
        "tensorboard", TensorBoardObserver,
        "TensorBoard event files in RUN_DIR/tensorboard, a folder per combination",
        requires=("tensorboard",), install="pip install 'rnn-harness[tensorboard]'"))
    register(ObserverSpec(
        "mlflow", MlflowObserver,
        "an MLflow run per combination, in MLFLOW_TRACKING_URI or RUN_DIR/mlruns",
        requires=("mlflow",), install="pip install 'rnn-harness[mlflow]'"))
