"""The Ray executor (``--executor ray``): every combination is one Ray task.

``address`` names an existing cluster; without it a local Ray is started for the run with
this machine's cores and shut down after it. Ray is an optional extra
(``pip install 'rnn-harness[ray]'``), imported only when this executor is made.

Each task asks for ``cpus_per_task`` CPUs (its torch threads), and a GPU when the device is
cuda, so Ray runs as many at once as the cluster has room for. The run (plan, data, plugin
loader) goes into Ray's object store once; a worker loads the plugins on its first task of
the run and keeps them. Every node needs harness, the run's plugins, and the same Python
and torch; the corpus travels with the run.

The executor contract holds (:mod:`harness.execute.executor`). A task that raises outside
the runner is ``failed`` with Ray's traceback; one whose worker or node dies is
``crashed`` (never retried: a resume does that); one running past ``timeout`` is cancelled
and ``timeout``. A task first yields :data:`STARTED`, so it is timed from when it starts,
not from when it was queued.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import torch

from harness.machine.device import available_cores
from harness.errors import ConfigError
from harness.execute.executor import Sink, check_sendable
from harness.numbers import check_number
from harness.plan.gate import RAY_MISSING, check_timeout
from harness.plan.plan import Combination
from harness.machine.determinism import VARIABLE, reproducible_mode
from harness.train.combination import Job, Outcome, lost_outcome
from harness.execute.signals import raise_if_interrupted

LOCAL_OBJECT_STORE_BYTES = 200_000_000
"""Object store of a local Ray started for a run: it holds the run (corpus ids, plan) once
and each outcome (records, curves, checkpoints: kilobytes to megabytes) until the driver
has it, so 200 MB is plenty, and far less than Ray's default of 30% of memory."""
POLL_SECONDS = 1.0
"""Longest wait for a task before the driver checks time limits and signals again."""
CONNECT_SECONDS = 5.0
"""How long ``--address`` may take to accept a connection before the run is refused."""
STARTED = "started"

_prepared: dict[str, Job] = {}
"""In a Ray worker process: the run whose plugins it has loaded, by run token."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _run_task(token: str, job: Job, combo: Combination, threads: int) -> Iterator[Any]:
    """A Ray task: one combination in a Ray worker. Yields :data:`STARTED` once the plugins
    are loaded, then the :class:`~harness.train.combination.Outcome`."""
    prepared = _prepared.get(token)
    if prepared is None:
        os.dup2(2, 1)  # a plugin's prints go to stderr, as the driver's stdout is the table
        if job.plan.device.type == "cuda":  # Ray shows the task only the GPU it was given
            job = replace(job, plan=replace(job.plan, device=torch.device("cuda")))
        _prepared.clear()
        prepared = _prepared[token] = job
        prepared.prepare()
    torch.set_num_threads(threads)
    yield STARTED
    yield prepared(combo)


@dataclass
class _Task:
    combo: Combination
    started: float | None = None
    """When its STARTED arrived (driver's clock); None while it waits for resources."""


class RayExecutor:
    """Runs each combination as a Ray task (see the module docstring)."""

    def __init__(self, address: str | None = None, cpus_per_task: int = 1,
                 timeout: float | None = None, isolate: bool = False,
                 local_cpus: int | None = None) -> None:
        check_number(cpus_per_task, name="--cpus-per-task", integer=True, minimum=1)
        check_timeout(timeout)
        self.ray = import_ray()
        self.address, self.cpus, self.timeout, self.isolate = address, cpus_per_task, \
            timeout, isolate
        self.local_cpus = local_cpus
        self.gpus = 0
        self.started_here = False

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "kind": "ray", "address": self.address or "local", "cpus_per_task": self.cpus,
            "gpus_per_task": self.gpus, "threads_per_job": self.cpus, "timeout": self.timeout,
            "isolate": self.isolate, "ray_version": self.ray.__version__}
        if self.ray.is_initialized():
            resources = self.ray.cluster_resources()
            described.update(cluster_address=self.ray.get_runtime_context().gcs_address,
                             cluster_nodes=len(_alive_nodes(self.ray)),
                             cluster_cpus=resources.get("CPU", 0),
                             cluster_gpus=resources.get("GPU", 0))
        return described

    def check(self, job: Job) -> None:
        """The job must pickle, Ray must be reachable, and some node must have room for one
        task (its CPUs, and a GPU for cuda). Connects to the cluster, or starts a local Ray."""
        check_sendable(job, "Ray workers", "--executor ray")
        check_timeout(self.timeout)  # set, or changed, after the executor was made
        self.gpus = 1 if job.plan.device.type == "cuda" else 0
        self._connect(job.quiet)
        try:
            self._check_room()
        except ConfigError:
            self.close()
            raise

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None:
        ray = self.ray
        if not ray.is_initialized():
            self.check(job)
        tasks: dict[Any, _Task] = {}
        try:
            token = uuid.uuid4().hex
            shared = ray.put(job.quietly())  # one terminal, many workers: no progress bars
            # A fresh worker per task with --isolate, and for GPU tasks (a CUDA context
            # stays on the GPU it was made for; Ray may give the next task another one).
            fresh = {"max_calls": 1} if self.isolate or self.gpus else {}
            remote = ray.remote(**fresh)(_run_task) if fresh else ray.remote(_run_task)
            for combo in work:
                generator = remote.options(
                    num_cpus=self.cpus, num_gpus=self.gpus, num_returns="streaming",
                    max_retries=0, name=combo.label).remote(token, shared, combo, self.cpus)
                tasks[generator] = _Task(combo)
            while tasks:
                raise_if_interrupted()  # a Ctrl-C that ray.wait swallowed still stops us
                ready, _ = ray.wait(list(tasks), num_returns=1, timeout=self._wait_limit(tasks))
                for generator in ready:
                    self._receive(generator, tasks, sink)
                self._enforce_timeout(tasks, sink)
        finally:
            for generator in tasks:  # interrupted, or the sink failed: stop what is left
                ray.cancel(generator, force=True)
            self.close()

    def close(self) -> None:
        """Shut down the local Ray this executor started (a cluster it joined stays up)."""
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_here = False

    # -- connecting -----------------------------------------------------------------------
    def _connect(self, quiet: bool) -> None:
        ray = self.ray
        if ray.is_initialized():  # the caller's own ray.init(): use it, leave it running
            return
        logging_level = logging.ERROR if quiet else logging.WARNING
        if self.address:
            _probe(self.address)
            try:
                env = _reproducible_env()
                with _handlers_kept():
                    ray.init(address=self.address, logging_level=logging_level,
                             runtime_env={"env_vars": env} if env else None)
            except (ConnectionError, RuntimeError, ValueError) as error:
                hint = "" if os.environ.get("RAY_AUTH_MODE") else (
                    " (a cluster with token authentication, Ray's default, needs "
                    "RAY_AUTH_MODE=token and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN "
                    "when joined by address; --address auto finds it on the head node)")
                raise ConfigError(f"cannot connect to the Ray cluster at {self.address}: "
                                  f"{_first_line(error)}{hint}") from None
        else:
            # Workers of a local Ray see what this process sees, as spawned processes do.
            path = os.pathsep.join(p for p in sys.path if p)
            with _handlers_kept():
                ray.init(num_cpus=self.local_cpus or available_cores(),
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         include_dashboard=False, logging_level=logging_level,
                         runtime_env={"env_vars": {"PYTHONPATH": path, **_reproducible_env()}})
        self.started_here = True

    def _check_room(self) -> None:
        nodes = _alive_nodes(self.ray)
        fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= self.cpus
                and n["Resources"].get("GPU", 0) >= self.gpus]
        if not fits:
            need = f"{self.cpus} CPU(s)" + (" and a GPU" if self.gpus else "")
            have = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPU / "
                             f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
            raise ConfigError(f"no node of the Ray cluster has room for one task ({need}); "
                              f"its nodes have: {have or 'none'}")

    # -- driving --------------------------------------------------------------------------
    def _wait_limit(self, tasks: dict[Any, _Task]) -> float:
        deadlines = [t.started + self.timeout for t in tasks.values()
                     if t.started is not None and self.timeout]
        if not deadlines:
            return POLL_SECONDS
        return max(0.0, min(POLL_SECONDS, min(deadlines) - time.monotonic()))

    def _receive(self, generator: Any, tasks: dict[Any, _Task], sink: Sink) -> None:
        """Take the next item of a ready task: its STARTED, its outcome, or its error."""
        task = tasks[generator]
        ray = self.ray
        try:
            item = ray.get(next(generator))
        except StopIteration:  # cannot happen after two items are read; be safe
            del tasks[generator]
            return
        except ray.exceptions.RayTaskError as error:  # it raised outside the runner
            del tasks[generator]
            cause = error.cause
            message = f"{type(cause).__name__}: {cause}" if cause else _first_line(error)
            outcome = lost_outcome(task.combo, status="failed", error=message,
                                   wall_seconds=self._ran(task))
            sink(replace(outcome, traceback=f"{task.combo.label}: {error}\n"))
            return
        except ray.exceptions.RayError as error:  # its worker or node died
            del tasks[generator]
            sink(lost_outcome(task.combo, status="crashed",
                              error="its Ray worker died while running this combination "
                              f"({type(error).__name__}: {_first_line(error)})",
                              wall_seconds=self._ran(task)))
            return
        if isinstance(item, Outcome):
            del tasks[generator]
            sink(item)
        elif item == STARTED:
            task.started = time.monotonic()

    def _enforce_timeout(self, tasks: dict[Any, _Task], sink: Sink) -> None:
        if not self.timeout:
            return
        now = time.monotonic()
        for generator, task in list(tasks.items()):
            if task.started is not None and now - task.started >= self.timeout:
                self.ray.cancel(generator, force=True)
                del tasks[generator]
                sink(lost_outcome(task.combo, status="timeout",
                                  error=f"ran longer than --timeout {self.timeout:g} s; its Ray "
                                  "task was cancelled and its worker killed",
                                  wall_seconds=now - task.started))

    @staticmethod
    def _ran(task: _Task) -> float:
        return time.monotonic() - task.started if task.started is not None else 0.0


@contextmanager
def _handlers_kept() -> Iterator[None]:
    """Put back the SIGINT and SIGTERM handlers ``ray.init`` replaces (its SIGTERM handler
    calls ``sys.exit``): during a run the harness's own guard handles both, and after it
    the caller's (a notebook's, a test's) must be what they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            if handler is not None:
                signal.signal(signum, handler)


def _probe(address: str) -> None:
    """ConfigError at once if ``HOST:PORT`` (or ``ray://HOST:PORT``) takes no connection:
    Ray itself retries an unreachable address for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: nothing answers "
                          f"there ({error.strerror or error}); start it with 'ray start "
                          "--head', or check the address 'ray start' printed") from None


def _alive_nodes(ray: ModuleType) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if "Traceback" in text else (text.splitlines() or [""])[0]


def _reproducible_env() -> dict[str, str]:
    """The oneMKL setting of ``--reproducible`` for the workers, where this run uses it
    (:mod:`harness.machine.determinism`); workers on other machines do not inherit our environment."""
    return {VARIABLE: os.environ[VARIABLE]} if reproducible_mode() else {}
