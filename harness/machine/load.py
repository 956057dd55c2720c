"""How busy the machine is: the load average, sampled while a combination trains, so that
its tokens/sec can be marked unreliable when other work shared the cores
(:mod:`harness.results.efficiency`)."""

from __future__ import annotations

import os


def load_average() -> float | None:
    """The 1-minute load average (threads runnable or waiting on I/O, averaged over about
    a minute, this process's own included); None where the OS keeps none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
