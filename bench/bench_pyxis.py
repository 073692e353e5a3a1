#!/usr/bin/env python3
"""Time the Slurm container path (pyxis + enroot) on a throw-away two-node cluster and print a table.

    .venv/bin/python bench/bench_pyxis.py --image REGISTRY/REPO@sha256:...

IMAGE is the CPU recipe image by digest in a registry on 127.0.0.1 (tests/fixtures_docker.py builds
and pushes it; `docker/image.sh push` prints the reference). Needs ci/build_vendor.sh to have built
pyxis and enroot (RECIPE_VENDOR_DIR, default /opt/recipe-vendor) and the enroot launcher it installs.

Rows: `recipe image sqsh` (enroot import by digest); then the tiny recipe on 2 nodes three ways,
each split by the job's own timestamped log lines (1 s resolution): from the staged .sqsh, with
pyxis pulling the image by digest on each node, and the baseline measured in the same run, the
same job with --container-runtime none (the host's Python, no containers).
A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from slurm_jobs import print_rows, seconds_of_day, sh, stamps, wait_done

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "tests" / "services" / "slurm_cluster.sh"
VENV_BIN = Path(sys.executable).parent
TINY = "nemotron3_nano_tiny"


def stamp_of(out: str, prefix: str) -> float:
    """Seconds of day of the first milestone starting with `prefix` (NaN if none)."""
    return next((t for t, m in stamps(out) if m.startswith(prefix)), float("nan"))


def tiny_job(env: dict[str, str], runs: Path, *opts: str) -> dict[str, float]:
    t_submit = time.monotonic()
    wall = dt.datetime.now(dt.UTC)
    p = sh(sys.executable, "-m", "runner.cli", "sbatch", TINY, "--nodes", "2", "--gpus-per-node", "0",
           "--runs-dir", str(runs), "--output-dir", str(runs / "out"), *opts, "--submit", env=env, timeout=120)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    job = p.stdout.strip()
    info, t_end = wait_done(env, job, 1200)
    out = (runs / f"recipe-{TINY}-{job}.out").read_text(errors="replace")
    if info.get("JobState") != "COMPLETED":
        raise SystemExit(f"job {job} {info.get('JobState')}:\n{out[-3000:]}")
    start = stamp_of(out, f"job {job}: recipe")
    nodes = stamp_of(out, "run directory shared")
    ready = stamp_of(out, "ray ready on")
    done = stamp_of(out, "recipe run succeeded")
    end = stamp_of(out, f"job {job} finished")
    submitted = seconds_of_day(wall)
    return {"queued": start - submitted, "nodes": nodes - start, "ray": ready - nodes, "run": done - ready,
            "stop": end - done, "total": t_end - t_submit}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True, help="the CPU recipe image, REGISTRY/REPO@sha256:...")
    a = ap.parse_args()
    vendor = Path(os.environ.get("RECIPE_VENDOR_DIR", "/opt/recipe-vendor"))
    if not (vendor / "pyxis" / "spank_pyxis.so").is_file() or not Path("/usr/local/bin/enroot").is_file():
        raise SystemExit(f"pyxis/enroot not built under {vendor}: run ci/build_vendor.sh as root")

    state = Path(tempfile.mkdtemp(prefix="bench-pyxis-"))
    env_c = {**os.environ, "RECIPE_VENDOR_DIR": str(vendor)}
    t0 = time.monotonic()
    p = sh("bash", str(CLUSTER_SH), "start", str(state / "cluster"), "2", env=env_c, timeout=900)
    start_s = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECIPE_", "SLURM_"))}
    env.update(SLURM_CONF=str(state / "cluster" / "slurm.conf"), PYTHONPATH=str(ROOT),
               PATH=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    rows: list[tuple[str, str, str]] = [("test cluster start with pyxis (munged, slurmctld, 2 x slurmd)",
                                         f"{start_s:.1f}", "")]
    try:
        # 1. enroot import by digest, with a cache of its own (a cold import).
        enroot_env = {**env, "ENROOT_ALLOW_HTTP": "yes"}
        enroot_env.pop("SLURM_CONF")
        for k in ("RUNTIME", "CACHE", "DATA", "TEMP"):
            enroot_env[f"ENROOT_{k}_PATH"] = str(state / "enroot" / k.lower())
        (state / "enroot" / "temp").mkdir(parents=True)
        t0 = time.monotonic()
        p = sh(sys.executable, "-m", "runner.cli", "image", "sqsh", TINY, "--image", a.image,
               "--output-dir", str(state / "images"), env=enroot_env, timeout=900)
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        sqsh = Path(p.stdout.strip())
        rows.append(("image import: recipe image sqsh (enroot, by digest, cold cache)", f"{time.monotonic() - t0:.1f}",
                     f"{sqsh.stat().st_size / 2**20:.0f} MiB .sqsh"))

        pyxis = ("--container-runtime", "pyxis", "--image", a.image, "--bundle-dir", "/opt/recipe-bundle")
        variants = [
            ("pyxis, staged .sqsh", tiny_job(env, state / "runs-sqsh", *pyxis, "--sqsh-dir", str(sqsh.parent))),
            ("pyxis, pulled by digest", tiny_job(env, state / "runs-pull", *pyxis)),
            ("baseline: no containers", tiny_job(env, state / "runs-none", "--container-runtime", "none")),
        ]
        for name, r in variants:
            rows += [
                (f"{name}: containers on both nodes (+ shared-dir check)", f"{r['nodes']:.0f}", "1 s resolution"),
                (f"{name}: Ray ready on 2 nodes", f"{r['ray']:.0f}", "1 s resolution"),
                (f"{name}: tiny run (recipe run to its gate)", f"{r['run']:.0f}", "1 s resolution"),
                (f"{name}: stop steps, remove containers", f"{r['stop']:.0f}", "1 s resolution"),
                (f"{name}: total, submit -> job ended", f"{r['total']:.1f}", ""),
            ]
    finally:
        sh("bash", str(CLUSTER_SH), "stop", str(state / "cluster"), env=env_c, timeout=900)
        shutil.rmtree(state, ignore_errors=True)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
