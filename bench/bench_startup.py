"""Benchmark: start-up time of `recipe --help` against a bare interpreter, in one run.

Prints a table (median of N runs, wall clock). A benchmark, not a test: timings vary by machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 15


def median_s(argv: list[str]) -> float:
    times = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    bare = median_s([sys.executable, "-c", "pass"])
    rows = [
        ("python -c pass (baseline)", bare),
        ("python -c 'import click'", median_s([sys.executable, "-c", "import click"])),
        ("recipe --help", median_s([sys.executable, "-m", "runner.cli", "--help"])),
        ("recipe list", median_s([sys.executable, "-m", "runner.cli", "list"])),
        ("recipe show nemotron3_nano", median_s([sys.executable, "-m", "runner.cli", "show", "nemotron3_nano"])),
    ]
    print(f"{'command':<32} {'median s':>9} {'x baseline':>11}   (N={N})")
    for name, s in rows:
        print(f"{name:<32} {s:9.3f} {s / bare:11.1f}")


if __name__ == "__main__":
    main()
