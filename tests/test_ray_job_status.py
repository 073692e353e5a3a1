"""The run script reads the Ray job's status from Ray's job API, not from the text around it: a job
that prints "succeeded" and then fails is a failed run. Real Ray, through launch.sh's own lifecycle."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

from runner.launch.ports import ray_ports

pytestmark = pytest.mark.slow


def launch_job(tmp_path: Path, job: str) -> subprocess.CompletedProcess:
    env = clean_env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", RECIPE_RUN_ID="status-test",
                    RECIPE_RUN_DIR=str(tmp_path), RECIPE_NODES="1", MASTER_ADDR="127.0.0.1",
                    RECIPE_RAY_TEMP_DIR=f"/tmp/recipe-ray-st{tmp_path.name[-6:]}",
                    RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                    **ray_ports())
    script = (f"source {ROOT}/recipes/lib/launch.sh\n"
              f"recipe_launch_job 0 0 '{{\"env_vars\": {{}}}}' -- python3 -c {shlex.quote(job)}\n")
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=240)


def test_a_job_that_prints_succeeded_and_fails_is_a_failed_run(tmp_path):
    p = launch_job(tmp_path, "print(\"Job 'status-test' succeeded\"); raise SystemExit(3)")
    assert p.returncode != 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "ray job status-test did not succeed: status FAILED" in p.stderr, p.stderr[-2000:]


def test_a_job_that_succeeds_is_a_succeeded_run_and_leaves_no_ray_temp_dir(tmp_path):
    p = launch_job(tmp_path, "print('done')")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "ray job status-test succeeded" in p.stderr
    # Ray's session files (about 2 MB, 140 logs) were left under /tmp by every run; the script that made
    # the directory removes it with its Ray
    assert not Path(f"/tmp/recipe-ray-st{tmp_path.name[-6:]}").exists()
