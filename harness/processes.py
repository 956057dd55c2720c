"""The process executor: ``--jobs N`` worker processes, ``--timeout``, crash isolation.

Each worker is a fresh interpreter started with ``spawn`` (never ``fork``, which would
copy torch's thread pools and locks in whatever state they were in). It loads the plugins
itself through the job's registry loader, sets torch to its share of the cores
(``max(1, cores // N)`` threads), reports ready, then runs one combination at a time as
the driver hands them out and sends back the outcome; the driver alone writes the run
directory, as each outcome arrives.

A worker that dies in the middle of a combination (``os._exit``, a segfault, the kernel's
OOM killer) gets that combination recorded as ``crashed``; one still running it after
``timeout`` seconds is killed and the combination recorded as ``timeout``. A fresh worker
takes its place and the grid goes on. With ``isolate`` every combination gets a fresh
worker, so nothing one plugin does to its process (a memory limit, a global setting, a
leak) reaches the next combination.
"""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.executor import Sink, check_sendable
from harness.plan import Combination
from harness.runner import Job, lost_outcome

READY = "ready"
START_METHOD = "spawn"
PR_SET_PDEATHSIG = 1


class WorkerError(HarnessError):
    """A worker process could not start, so no combination can run."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``jobs`` workers: the cores split evenly, at least one."""
    return max(1, (cores or available_cores()) // jobs)


def exit_reason(exitcode: int | None) -> str:
    """How a process ended, in words (``killed by SIGSEGV``, ``exited with code 3``)."""
    if exitcode is None:
        return "vanished"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" \
            if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _worker_main(conn: Connection, job: Job, threads: int, driver: int) -> None:
    """A worker's life: set up, say ready, then run combinations until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the
    _die_with_driver(driver)                      # driver handles it and stops us
    os.dup2(2, 1)  # anything a plugin prints goes to stderr; the driver's stdout is the table
    faulthandler.enable()  # a segfault prints the Python stack to stderr before we die
    import torch

    torch.set_num_threads(threads)
    job.prepare()
    conn.send(READY)
    while True:
        try:
            combo = conn.recv()
        except EOFError:  # the driver is gone
            return
        if combo is None:
            return
        conn.send(job(combo))


def _die_with_driver(driver: int) -> None:
    """On Linux, have the kernel kill this worker when the driver dies, however it dies."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != driver:  # the driver died before prctl took effect
        os._exit(1)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    combo: Combination | None = None
    started: float = 0.0

    def dispatch(self, combo: Combination) -> None:
        self.combo, self.started = combo, time.monotonic()
        self.conn.send(combo)

    def stop(self) -> None:
        """Ask an idle worker to exit; kill a busy (or deaf) one."""
        if self.process.is_alive() and self.combo is None and self.ready:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class ProcessExecutor:
    """Runs combinations in ``jobs`` spawned worker processes (see the module docstring)."""

    def __init__(self, jobs: int = 1, timeout: float | None = None, isolate: bool = False,
                 cores: int | None = None) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"--timeout must be a number of seconds > 0, got {timeout}")
        self.jobs, self.timeout, self.isolate = jobs, timeout, isolate
        self.threads = threads_per_worker(jobs, cores)

    def describe(self) -> dict[str, Any]:
        return {"kind": "processes", "jobs": self.jobs, "threads_per_job": self.threads,
                "timeout": self.timeout, "isolate": self.isolate,
                "start_method": START_METHOD}

    def check(self, job: Job) -> None:
        """The job must survive pickling: it is sent to each worker."""
        check_sendable(job, "worker processes", "--jobs")

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None:
        job = job.quietly() if self.jobs > 1 else job  # one terminal, many workers: no bars
        context = multiprocessing.get_context(START_METHOD)
        pending = deque(work)
        workers: list[_Worker] = []
        try:
            while pending or any(w.combo for w in workers):
                busy = sum(1 for w in workers if w.combo)
                while len(workers) < min(self.jobs, busy + len(pending)):
                    workers.append(self._start(context, job))
                for worker in workers:
                    if worker.ready and worker.combo is None and pending:
                        worker.dispatch(pending.popleft())
                self._wait(workers, sink)
        finally:
            for worker in workers:
                worker.stop()

    def _start(self, context: Any, job: Job) -> _Worker:
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, job, self.threads,
                                                             os.getpid()),
                                  name="harness-worker")
        process.start()
        child.close()
        return _Worker(process, parent)

    def _wait(self, workers: list[_Worker], sink: Sink) -> None:
        """Block until a worker reports, dies or reaches its deadline; handle all that did."""
        deadlines = [w.started + self.timeout for w in workers if w.combo and self.timeout]
        limit = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        wait([w.conn for w in workers] + [w.process.sentinel for w in workers], limit)
        for worker in list(workers):
            if self._receive(worker, workers, sink):
                continue
            if not worker.process.is_alive():
                worker.process.join()
                workers.remove(worker)
                self._lost(worker, sink)
            elif worker.combo and self.timeout and \
                    time.monotonic() - worker.started >= self.timeout:
                worker.process.kill()
                worker.stop()
                workers.remove(worker)
                sink(lost_outcome(worker.combo, "timeout",
                                  f"ran longer than --timeout {self.timeout:g} s; its worker "
                                  "process was killed", time.monotonic() - worker.started))

    def _receive(self, worker: _Worker, workers: list[_Worker], sink: Sink) -> bool:
        """Take one message from ``worker`` if it sent one; False if there was none."""
        try:
            if not worker.conn.poll():
                return False
            message = worker.conn.recv()
        except (EOFError, OSError):  # it died mid-message; its sentinel tells the rest
            return False
        if message == READY:
            worker.ready = True
            return True
        worker.combo = None
        sink(message)
        if self.isolate:
            worker.stop()
            workers.remove(worker)
        return True

    def _lost(self, worker: _Worker, sink: Sink) -> None:
        reason = exit_reason(worker.process.exitcode)
        worker.conn.close()
        if worker.combo is not None:
            sink(lost_outcome(worker.combo, "crashed",
                              f"worker process {reason} while running this combination",
                              time.monotonic() - worker.started))
        elif not worker.ready:
            raise WorkerError(f"a worker process {reason} while starting, before it could "
                              "run anything (its stderr is above)")

