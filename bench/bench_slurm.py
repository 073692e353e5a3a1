#!/usr/bin/env python3
"""Time the Slurm launch path on a throw-away two-node cluster (tests/services/slurm_cluster.sh) and print a table.

    .venv/bin/python bench/bench_slurm.py [--repeat N]

Rows: cluster start; a two-node Ray probe job (submit -> Ray ready on both nodes -> run done ->
all steps stopped); how fast a job fails once a node's step is killed; and stopping one Ray head
with the shared recipe_ray_stop (TERM to `ray start`, then its group) against the former way
(TERM to the whole group at once, which leaves `ray start` waiting on a dead GCS).
A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from slurm_jobs import print_rows, seconds_of_day, sh, stamps, wait_done

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def submit(env: dict[str, str], bundle: Path, runs: Path, **extra_env: str) -> str:
    p = sh(sys.executable, "-m", "runner.cli", "sbatch", "ray_probe", "--nodes", "2", "--gpus-per-node", "0",
           "--container-runtime", "none", "--runs-dir", str(runs), "--output-dir", str(runs / "out"), "--submit",
           "--", "--skip-preflight", "lint", env={**env, **extra_env})
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return p.stdout.strip()


def probe_job(env: dict[str, str], bundle: Path, runs: Path) -> dict[str, float]:
    t_submit = time.monotonic()
    wall_submit = dt.datetime.now(dt.UTC)
    job = submit(env, bundle, runs)
    info, t_end = wait_done(env, job, 400)
    out = (runs / f"recipe-ray_probe-{job}.out").read_text()
    assert info.get("JobState") == "COMPLETED", out[-2000:]
    s = stamps(out)
    first = s[0][0]
    succeeded = next(t for t, m in s if m.startswith("recipe run succeeded"))
    finished = next(t for t, m in s if m.startswith(f"job {job} finished"))
    m = re.search(r"^ray ready: .* after ([0-9.]+) s$", out, re.M)
    bringup = float(m.group(1)) if m else float("nan")
    start_of_day = seconds_of_day(wall_submit)
    shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)
    return {"queued_s": first - start_of_day, "bringup_s": bringup, "run_s": succeeded - first - bringup,
            "stop_s": finished - succeeded, "total_s": t_end - t_submit}


def fail_fast(env: dict[str, str], bundle: Path, runs: Path) -> float:
    job = submit(env, bundle, runs, PROBE_HOLD_S="300")
    deadline = time.monotonic() + 180
    steps: dict[str, str] = {}
    while time.monotonic() < deadline and "recipe-run" not in steps:
        out = sh("squeue", "-h", "-s", "-j", job, "-o", "%i %j", env=env).stdout
        steps = {n: i for i, n in (line.split(None, 1) for line in out.splitlines() if " " in line)}
        time.sleep(0.2)
    t0 = time.monotonic()
    sh("scancel", "--signal=KILL", steps["ray-worker-n2"], env=env)
    _, t_end = wait_done(env, job, 120)
    shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)
    return t_end - t0


def ray_stop(mode: str) -> float:
    """Start one Ray head with recipe_ray_start, stop it the current way or the former way; seconds to stop."""
    tmp = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    from runner.launch.ports import ray_ports  # free ports, like `recipe run`

    env = {**os.environ, **ray_ports(), "RECIPE_RAY_TEMP_DIR": str(tmp), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    # former: TERM to the group, wait (30 s at most, as it did), then KILL
    stop = "recipe_ray_stop" if mode == "current" else (
        'kill -TERM -- "-$RECIPE_RAY_PID"; for ((i = 0; i < 300; i++)); do '
        'kill -0 -- "-$RECIPE_RAY_PID" 2>/dev/null || break; sleep 0.1; done; kill -KILL -- "-$RECIPE_RAY_PID"')
    script = f"""
source {ROOT}/recipes/lib/launch.sh
recipe_ray_start head 127.0.0.2 0 >/dev/null 2>&1
python3 {ROOT}/recipes/lib/ray_wait.py --address "127.0.0.2:$RECIPE_RAY_PORT" --nodes 1 --gpus 0 \
  --timeout 120 >/dev/null
t0=$(date +%s.%N)
{stop} 2>/dev/null
echo "$(date +%s.%N) $t0"
"""
    p = sh("bash", "-c", script, env=env, timeout=300)
    shutil.rmtree(tmp, ignore_errors=True)
    t1, t0 = map(float, p.stdout.split()[-2:])
    return t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="probe jobs to time (default 1)")
    a = ap.parse_args()
    if not shutil.which("slurmctld"):
        raise SystemExit("needs slurm-wlm and munge: apt-get install slurm-wlm munge")

    state = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    bundle = state / "bundle"
    shutil.copytree(ROOT / "recipes" / "lib", bundle / "recipes" / "lib")
    shutil.copytree(ROOT / "tests" / "data" / "ray_probe_recipe", bundle / "recipes" / "ray_probe")
    t0 = time.monotonic()
    p = sh("bash", str(ROOT / "tests" / "services" / "slurm_cluster.sh"), "start", str(state / "cluster"), "2")
    start_s = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECIPE_", "SLURM_"))}
    env.update(SLURM_CONF=str(state / "cluster" / "slurm.conf"), RECIPE_BUNDLE_ROOT=str(bundle),
               PATH=f"{VENV_BIN}:/usr/bin:/bin:/usr/sbin:/sbin", PYTHONPATH=str(ROOT))
    rows: list[tuple[str, str, str]] = [("test cluster start (munged, slurmctld, 2 x slurmd)", f"{start_s:.1f}", "")]
    try:
        jobs = [probe_job(env, bundle, state / f"runs{i}") for i in range(a.repeat)]
        med = {k: statistics.median(j[k] for j in jobs) for k in jobs[0]}
        rows += [
            ("probe job: submit -> first step running", f"{med['queued_s']:.0f}", "1 s resolution"),
            ("probe job: Ray bring-up on 2 nodes (ray ready)", f"{med['bringup_s']:.1f}", "from ray_wait.py"),
            ("probe job: recipe run (Ray job on both nodes)", f"{med['run_s']:.0f}", "1 s resolution"),
            ("probe job: stop every step after the run", f"{med['stop_s']:.0f}", "1 s resolution"),
            ("probe job: submit -> job ended", f"{med['total_s']:.1f}", f"median of {a.repeat}"),
            ("fail-fast: worker step killed -> job FAILED", f"{fail_fast(env, bundle, state / 'runs-ff'):.1f}",
             "kill to FAILED, seen by scontrol"),
        ]
    finally:
        sh("bash", str(ROOT / "tests" / "services" / "slurm_cluster.sh"), "stop", str(state / "cluster"))
    rows += [
        ("stop one Ray head: recipe_ray_stop (TERM ray start, then group)", f"{ray_stop('current'):.1f}", "current"),
        ("stop one Ray head: TERM whole group at once", f"{ray_stop('former'):.1f}", "former recipe_ray_stop"),
    ]
    shutil.rmtree(state, ignore_errors=True)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
