"""How long the front door takes: ``harness --help`` and friends against ``python -c pass``.

    python benchmarks/front_door.py [--rounds 10]

Each command runs in a fresh interpreter, alternating with the baseline in every round, so
a busy machine slows both alike; the table gives medians and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import harness": [sys.executable, "-c", "import harness"],
    "harness --help": [sys.executable, "-m", "harness", "--help"],
    "harness --version": [sys.executable, "-m", "harness", "--version"],
    "harness plugins --help": [sys.executable, "-m", "harness", "plugins", "--help"],
    "harness run --help": [sys.executable, "-m", "harness", "run", "--help"],
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':26} {'median s':>9} {'x baseline':>10} {'+ s':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:26} {median:9.3f} {median / base:10.2f} {median - base:7.3f}")


if __name__ == "__main__":
    main()
