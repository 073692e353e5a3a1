#!/usr/bin/env python3
"""Benchmark `recipe verify` against coreutils, against this machine's real hashing limit, and cached.

Creates files in a temp dir (by default 4 x 256 MiB; `--layout nemotron` gives the 21 files of
the 30B recipe at `--scale` times their real sizes), reads them once to warm the page cache, then
times (best of --repeat):

  - the concurrent limit: every file already in memory, all hashed at once, one thread per file,
    no I/O. SHA-256 is serial within a file, so this is what the machine's cores can do on these
    files; it replaces "cores x one core's rate", which overstates the limit (memory bandwidth,
    shared core resources and the largest file all count). With more files than cores, the same
    in memory with verify's own schedule (a pool of one thread per core, largest file first) is
    printed too: a tighter bound, as the cores time-slice the one-per-file threads;
  - `sha256sum -c --strict` on the same manifest (the baseline a user has anyway);
  - runner.inputs.verify.verify_manifest: 1 worker, the default (one per core, up to the files),
    the default with 8 MiB reads (the previous default chunk: today's baseline), and the default
    re-run with a warm verified-inputs cache (stat only; nothing read).

It prints the ratios the project holds itself to: cached re-verify vs full verify (>= 100x) and
warm verify vs the concurrent limit (>= 90% on a many-core host). Standard library and this
checkout only, so it runs on a bare GPU host: `python3 bench/bench_verify.py --layout nemotron`.

A speed target, not a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.inputs import manifest as mf  # noqa: E402
from runner.inputs.verify import TRUSTED, default_workers, verify_manifest  # noqa: E402
from runner.inputs.verify_cache import RACY_NS, VerifyCache  # noqa: E402

# Nemotron-3-Nano-30B-A3B-BF16 at cbd3fa9f, and the data set: the sizes in recipes/nemotron3_nano/inputs.sha256
NEMOTRON_SIZES = [4991205008, 4992601472, 4992601824, 4995693256, 4980545984, 4999410040, 4992601952,
                  4992601976, 4995693256, 4992601976, 4995693256, 4995693272, 3239751000, 613296, 17077485,
                  188049, 10504, 1817, 197, 420, 10490834]


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


def one_core_rate(seconds: float = 0.3) -> float:
    """Bytes/s of hashlib SHA-256 on one core, data in memory (information only)."""
    buf = os.urandom(8 << 20)
    h, n, t0 = hashlib.sha256(), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        h.update(buf)
        n += len(buf)
    return n / (time.perf_counter() - t0)


def concurrent_limit(paths: list[Path], repeat: int) -> tuple[float, float]:
    """All files in memory, each hashed by its own thread, all started together: (wall s, CPU s)."""
    datas = [p.read_bytes() for p in paths]

    def run() -> None:
        threads = [threading.Thread(target=hashlib.sha256, args=(d,)) for d in datas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return best(run, repeat)  # the data is freed on return


def pooled_limit(paths: list[Path], workers: int, repeat: int) -> tuple[float, float]:
    """All files in memory, hashed by `workers` threads taking the largest first (verify's own
    schedule, without the reading): with more files than cores, a tighter bound than one thread
    per file, whose threads the cores time-slice."""
    datas = sorted((p.read_bytes() for p in paths), key=len, reverse=True)

    def run() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(hashlib.sha256, datas))
    return best(run, repeat)


def make_files(root: Path, sizes: list[int]) -> list[mf.Entry]:
    """Files of the given sizes with distinct content; returns their manifest entries."""
    (root / "model").mkdir(parents=True)
    block = os.urandom(1 << 20)
    entries = []
    for i, size in enumerate(sizes):
        p = root / "model" / f"file-{i + 1:05d}.bin"
        h = hashlib.sha256()
        with open(p, "wb") as f:
            left, j = size, 0
            while left:
                chunk = ((j.to_bytes(8, "little") + bytes([i % 256])) + block[9:])[:left]  # distinct per file
                f.write(chunk)
                h.update(chunk)
                left -= len(chunk)
                j += 1
        entries.append(mf.Entry(f"model/{p.name}", h.hexdigest(), size))
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", choices=("even", "nemotron"), default="even")
    ap.add_argument("--files", type=int, default=4, help="even layout: how many files")
    ap.add_argument("--size-mb", type=int, default=256, help="even layout: MiB per file")
    ap.add_argument("--scale", type=float, default=0.125, help="nemotron layout: fraction of the real sizes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to create the files (default: a temp dir)")
    ap.add_argument("--chunks", type=lambda v: [int(x) << 10 for x in v.split(",") if x], default=[8 << 20],
                    help="KiB read sizes to time besides the default (default 8192: the previous default)")
    a = ap.parse_args()

    sizes = ([a.size_mb << 20] * a.files if a.layout == "even"
             else [max(1, int(s * a.scale)) for s in NEMOTRON_SIZES])
    cores = default_workers(10_000)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench_verify.") as tmp:
        root = Path(tmp) / "inputs"
        entries = make_files(root, sizes)
        man = Path(tmp) / "inputs.sha256"
        mf.write(mf.Manifest({"bench": "verify"}, entries), man)
        created = time.time_ns()
        total = sum(sizes)
        assert verify_manifest(man, root).ok  # warms the page cache and checks the set-up
        paths = [root / e.path for e in entries]
        workers = default_workers(len(paths))

        def run_verify(n: int, chunk: int | None = None, cache: VerifyCache | None = None) -> None:
            kw = {"chunk": chunk} if chunk else {}
            r = verify_manifest(man, root, workers=n, cache=cache, **kw)
            assert r.ok, r.summary()

        rows = []
        if shutil.which("sha256sum"):
            rows.append(("sha256sum -c --strict (coreutils)", 1, best(lambda: subprocess.run(
                ["sha256sum", "-c", "--strict", "--quiet", str(man)], cwd=root, check=True), 1)))
        limit = concurrent_limit(paths, a.repeat)
        rows.append((f"concurrent limit ({len(paths)} threads, in memory)", len(paths), limit))
        pooled = pooled_limit(paths, workers, a.repeat) if workers < len(paths) else None
        if pooled:
            rows.append((f"in memory, {workers} threads, largest first", workers, pooled))
        rows.append(("recipe verify, 1 worker", 1, best(lambda: run_verify(1), 1)))
        for chunk in a.chunks:
            rows.append((f"recipe verify, {workers} workers, {chunk >> 10} KiB reads", workers,
                         best(lambda c=chunk: run_verify(workers, c), a.repeat)))
        full = best(lambda: run_verify(workers), a.repeat)
        rows.append((f"recipe verify, {workers} workers (default, warm)", workers, full))

        wait = (created + RACY_NS - time.time_ns()) / 1e9  # files younger than the racy window are not cached
        if wait > 0:
            time.sleep(wait + 0.05)
        cache = VerifyCache(root, Path(tmp) / "cache")
        run_verify(workers, cache=cache)  # fills the cache
        check = verify_manifest(man, root, cache=VerifyCache(root, Path(tmp) / "cache"))
        assert check.ok and all(f.how == TRUSTED for f in check.files), check.summary()
        cached = best(lambda: run_verify(workers, cache=VerifyCache(root, Path(tmp) / "cache")), a.repeat)
        rows.append(("recipe verify, cached (stamps unchanged)", workers, cached))
        single = one_core_rate()

    print(f"{len(sizes)} files ({a.layout}{f', scale {a.scale:g}' if a.layout == 'nemotron' else ''}) = "
          f"{total / 1e9:.2f} GB, largest {max(sizes) / 1e9:.2f} GB, warm page cache, best of {a.repeat}; "
          f"{cores} cores; load average before/after: {load0:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"one core's SHA-256 (hashlib, in memory): {single / 1e9:.2f} GB/s (information: cores x that = "
          f"{cores * single / 1e9:.1f} GB/s overstates the limit)")
    print()
    lim_t = limit[0]
    base = rows[0][2][0]
    print(f"| {'method':<52} | {'threads':>7} | {'time s':>7} | {'GB/s':>6} | {'x sha256sum':>11} "
          f"| {'% of limit':>10} | {'GB/CPU-s':>8} |")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 12}|{'-' * 10}|")
    for name, w, (t, cpu) in rows:
        rate = total / t
        per_cpu = f"{total / cpu / 1e9:>8.2f}" if cpu > 0.01 else f"{'-':>8}"
        print(f"| {name:<52} | {w:>7} | {t:>7.3f} | {rate / 1e9:>6.2f} | {base / t:>11.2f} | "
              f"{100 * lim_t / t:>9.0f}% | {per_cpu} |")
    print()
    print(f"cached re-verify vs full verify: {full[0] / cached[0]:.0f}x faster (target >= 100x)")
    print(f"warm verify vs the concurrent limit: {100 * lim_t / full[0]:.0f}% (target >= 90% on a many-core host)")
    if pooled:
        print(f"warm verify vs in memory with its own schedule: {100 * pooled[0] / full[0]:.0f}% "
              f"(the cost of reading from the page cache)")


if __name__ == "__main__":
    main()
