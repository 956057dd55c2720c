"""The process executor: ``--jobs N`` worker processes, ``--timeout``, crash isolation.

Each worker is a fresh ``spawn``ed interpreter (a ``fork`` would copy torch's thread pools
and locks in whatever state they were in). It loads the plugins through the job's loader,
takes ``max(1, cores // N)`` torch threads, and runs one combination at a time, sending
back the outcome; the driver alone writes the run directory.

With ``lend_cores`` (the default in ``--reproducible`` mode, where numbers do not depend
on the thread count) the cores of workers left without work are split between the busy
ones, which take up their share before the next epoch (:func:`follow_share`); a model
whose gradients depend on the thread count is lent none
(:func:`harness.train.combination.check_threads`). Outside that mode the cores stay idle:
a combination's numbers would depend on when the others finished.

A worker that dies mid-combination gets it recorded as ``crashed``; one still running it
after ``timeout`` seconds is killed and it is recorded as ``timeout``; a fresh worker takes
its place. With ``isolate`` every combination gets a fresh worker, so nothing a plugin
does to its process (a memory limit, a global setting, a leak) reaches the next.
"""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from harness.machine.device import available_cores
from harness.errors import HarnessError
from harness.execute.executor import Sink, check_sendable
from harness.numbers import check_number
from harness.plan.gate import check_timeout
from harness.plan.plan import Combination
from harness.machine.determinism import reproducible_mode, warm_up_math
from harness.train.combination import Job, lost_outcome

READY = "ready"
START_METHOD = "spawn"
PR_SET_PDEATHSIG = 1


class WorkerError(HarnessError):
    """A worker process could not start, so no combination can run."""


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``jobs`` workers: the cores split evenly, at least one."""
    return max(1, (cores or available_cores()) // jobs)


def split_cores(cores: int, workers: int) -> list[int]:
    """``cores`` split between ``workers`` busy workers: at least one each, the remainder
    to the first ones (5 cores, 2 workers: ``[3, 2]``)."""
    share, extra = divmod(cores, workers)
    return [max(1, share + (i < extra)) for i in range(workers)]


def follow_share(share: Any) -> None:
    """In a worker, between epochs: take up the thread count the driver last set in
    ``share`` (a shared ``int``), if it changed. The first threaded call of a vector-math
    function may round differently from later ones (:func:`warm_up_math`), so a new
    thread count gets its warm-up too."""
    import torch

    wanted = share.value
    if wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)
        warm_up_math()


def exit_reason(exitcode: int | None) -> str:
    """How a process ended, in words (``killed by SIGSEGV``, ``exited with code 3``)."""
    if exitcode is None:
        return "vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:  # a real-time signal (SIGRTMIN and up) has no name in Python
            name = f"signal {-exitcode}"
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" \
            if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


def _worker_main(conn: Connection, job: Job, share: Any, lend: bool, driver: int) -> None:
    """A worker's life: set up, say ready, then run combinations until told to stop, on
    the thread count in ``share``, which the driver may raise where ``lend`` is true."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the
    _die_with_driver(driver)                      # driver handles it and stops us
    os.dup2(2, 1)  # anything a plugin prints goes to stderr; the driver's stdout is the table
    faulthandler.enable()  # a segfault prints the Python stack to stderr before we die
    import torch
    from tqdm import tqdm

    # tqdm's default lock is a named semaphore, which a worker killed on Ctrl-C would leak
    # (the resource tracker warns at exit); one worker's bar needs only a thread lock.
    tqdm.set_lock(threading.RLock())
    torch.set_num_threads(share.value)
    if lend:
        job = replace(job, take_lent_threads=partial(follow_share, share))
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
    share: Any  # the torch threads it is to use: a multiprocessing RawValue("i")
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
                 cores: int | None = None, lend_cores: bool | None = None) -> None:
        """``lend_cores``: give the cores of workers left without work to the busy ones
        (the module docstring); ``None``: only in ``--reproducible`` mode."""
        check_number(jobs, name="--jobs", integer=True, minimum=1)
        check_timeout(timeout)
        self.jobs, self.timeout, self.isolate = jobs, timeout, isolate
        self.cores = cores or available_cores()
        self.threads = threads_per_worker(jobs, self.cores)
        self._lend = lend_cores

    @property
    def lends_cores(self) -> bool:
        """Whether idle workers' cores go to the busy ones (decided when asked, so that a
        ``--reproducible`` mode set after this executor was made counts)."""
        return reproducible_mode() if self._lend is None else self._lend

    def describe(self) -> dict[str, Any]:
        return {"kind": "processes", "jobs": self.jobs, "threads_per_job": self.threads,
                "lend_idle_cores": self.lends_cores, "timeout": self.timeout,
                "isolate": self.isolate, "start_method": START_METHOD}

    def check(self, job: Job) -> None:
        """The job must survive pickling: it is sent to each worker."""
        check_timeout(self.timeout)  # set, or changed, after the executor was made
        check_sendable(job, "worker processes", "--jobs")

    def run(self, work: Sequence[Combination], job: Job, sink: Sink) -> None:
        job = job.quietly() if self.jobs > 1 else job  # one terminal, many workers: no bars
        context = multiprocessing.get_context(START_METHOD)
        pending = deque(work)
        workers: list[_Worker] = []
        lend = self.lends_cores
        try:
            while pending or any(w.combo for w in workers):
                busy = sum(1 for w in workers if w.combo)
                while len(workers) < min(self.jobs, busy + len(pending)):
                    workers.append(self._start(context, job, lend))
                for worker in workers:
                    if worker.ready and worker.combo is None and pending:
                        worker.dispatch(pending.popleft())
                if lend and not pending:
                    self._lend_idle_cores(workers)
                self._wait(workers, sink)
        finally:
            for worker in workers:
                worker.stop()

    def _lend_idle_cores(self, workers: list[_Worker]) -> None:
        """All cores to the busy workers: they take it up before their next epoch."""
        busy = [w for w in workers if w.combo]
        for worker, threads in zip(busy, split_cores(self.cores, len(busy))):
            worker.share.value = threads

    def _start(self, context: Any, job: Job, lend: bool) -> _Worker:
        parent, child = context.Pipe()
        share = context.RawValue("i", self.threads)
        process = context.Process(target=_worker_main, name="harness-worker",
                                  args=(child, job, share, lend and self.cores > 1,
                                        os.getpid()))
        # The child inherits an ignored SIGINT through exec, so a Ctrl-C while it is still
        # importing (before _worker_main) cannot print its traceback; the driver handles
        # Ctrl-C. Only the few milliseconds of start() go without the driver's handler.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) \
            if threading.current_thread() is threading.main_thread() else None
        try:
            process.start()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        child.close()
        return _Worker(process, parent, share)

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
                sink(lost_outcome(worker.combo, status="timeout",
                                  error=f"ran longer than --timeout {self.timeout:g} s; its "
                                  "worker process was killed",
                                  wall_seconds=time.monotonic() - worker.started))

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
            sink(lost_outcome(worker.combo, status="crashed",
                              error=f"worker process {reason} while running this combination",
                              wall_seconds=time.monotonic() - worker.started))
        elif not worker.ready:
            raise WorkerError(f"a worker process {reason} while starting, before it could "
                              "run anything (its stderr is above)")

