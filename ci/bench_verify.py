#!/usr/bin/env python3
"""Benchmark `recipe verify`'s hashing against coreutils and against this machine's hashing limit.

Creates a few files of a few hundred MB in a temp dir, reads them once to warm the page cache,
then times (best of --repeat):
  - runner.inputs.verify.verify_manifest with 1 worker and with the default (one per core),
  - `sha256sum -c --strict` on the same manifest,
and measures the limit: cores x one core's SHA-256 rate (hashlib on data in memory, same run).
SHA-256 is serial within a file, so with fewer files than cores the limit is files x one core.

    .venv/bin/python ci/bench_verify.py [--files 4] [--size-mb 256] [--repeat 3]

A speed target, not a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.inputs import manifest as mf  # noqa: E402
from runner.inputs.verify import default_workers, verify_manifest  # noqa: E402


def one_core_rate(trials: int = 5, seconds: float = 0.3) -> float:
    """Bytes/s of hashlib SHA-256 on one core, data already in memory (8 MiB updates); the best of
    a few short trials, as the other runs are best-of too (the machine is shared)."""
    buf = os.urandom(8 << 20)
    rates = []
    for _ in range(trials):
        h = hashlib.sha256()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            h.update(buf)
            n += len(buf)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (sha256sum), user + system."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def best(fn, repeat: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the fastest of `repeat` runs."""
    runs = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), cpu_seconds()
        fn()
        runs.append((time.perf_counter() - t0, cpu_seconds() - c0))
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to create the files (default: a temp dir)")
    a = ap.parse_args()

    cores = default_workers(10_000)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench_verify.") as tmp:
        root = Path(tmp) / "inputs"
        (root / "model").mkdir(parents=True)
        entries = []
        block = os.urandom(1 << 20)
        for i in range(a.files):
            p = root / "model" / f"model-{i + 1:05d}-of-{a.files:05d}.safetensors"
            h = hashlib.sha256()
            with open(p, "wb") as f:
                for j in range(a.size_mb):
                    chunk = (j.to_bytes(8, "little") + bytes([i])) + block[9:]  # distinct per file
                    f.write(chunk)
                    h.update(chunk)
            entries.append(mf.Entry(f"model/{p.name}", h.hexdigest(), p.stat().st_size))
        man = Path(tmp) / "inputs.sha256"
        mf.write(mf.Manifest({"bench": "verify"}, entries), man)
        total = sum(e.size for e in entries)
        verify_manifest(man, root)  # warm the page cache (and check the set-up)

        def run_verify(workers: int) -> None:
            r = verify_manifest(man, root, workers=workers)
            assert r.ok, r.summary()

        def run_coreutils() -> None:
            subprocess.run(["sha256sum", "-c", "--strict", "--quiet", str(man)], cwd=root, check=True)

        single = one_core_rate()
        workers = default_workers(a.files)
        rows = [
            ("sha256sum -c --strict (coreutils)", 1, best(run_coreutils, a.repeat)),
            ("recipe verify, 1 worker", 1, best(lambda: run_verify(1), a.repeat)),
            (f"recipe verify, {workers} workers (default)", workers, best(lambda: run_verify(workers), a.repeat)),
        ]
        single = max(single, one_core_rate())  # before and after: the limit is never underestimated
        limit = min(cores, a.files) * single
    base = rows[0][2][0]
    print(f"{a.files} files x {a.size_mb} MiB = {total / 1e9:.2f} GB, warm page cache, best of {a.repeat}; "
          f"{cores} cores; load average before/after: {load0:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"one core's SHA-256 (hashlib, in memory): {single / 1e9:.2f} GB/s; "
          f"limit min(cores, files) x that = {limit / 1e9:.2f} GB/s")
    print("GB/CPU-s: bytes checked per CPU second spent; vs 1 core: that over one core's rate (overhead,")
    print("insensitive to other load). % of limit: wall-clock rate over the limit (needs idle cores).")
    print()
    print(f"| {'method':<40} | {'workers':>7} | {'time s':>6} | {'GB/s':>5} | {'x sha256sum':>11} "
          f"| {'% of limit':>10} | {'GB/CPU-s':>8} | {'vs 1 core':>9} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 8}|{'-' * 7}|{'-' * 13}|{'-' * 12}|{'-' * 10}|{'-' * 11}|")
    for name, w, (t, cpu) in rows:
        rate, per_cpu = total / t, total / cpu
        print(f"| {name:<40} | {w:>7} | {t:>6.2f} | {rate / 1e9:>5.2f} | {base / t:>11.2f} | "
              f"{100 * rate / limit:>9.0f}% | {per_cpu / 1e9:>8.2f} | {100 * per_cpu / single:>8.0f}% |")


if __name__ == "__main__":
    main()
