"""Who can reach a run's Ray, with the real Ray (recipes/lib/launch.sh, ray_node.sh): a one-node run's
Ray listens on loopback only; a Ray other hosts reach requires Ray's token authentication, whose
token travels only through the environment (never a file of the run, argv or a log)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, clean_env, recipe

from runner.launch.ports import free_block

LAUNCH = ROOT / "recipes" / "lib" / "launch.sh"
RAY_NODE = ROOT / "recipes" / "lib" / "ray_node.sh"
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
BIN = str(Path(sys.executable).parent)

# The job: a driver that runs one task (so a worker of its own listens too), says so, then waits for
# the test to look at the sockets.
DRIVER = """
import os, sys, time, ray
ray.init()
assert ray.get(ray.remote(lambda: 1).remote()) == 1
open(sys.argv[1], "w").close()
end = time.time() + 90
while not os.path.exists(sys.argv[2]) and time.time() < end:
    time.sleep(0.2)
print("driver done")
"""

# A run script's tail, as runner/plan/script.py renders it: launch.sh, then recipe_launch_job.
SCRIPT = """set -euo pipefail
source "$1"
shift
recipe_launch_job 0 0 "$(recipe_runtime_env_json)" -- "$@"
"""


def base_env(ray_tmp: Path, run_dir: Path, **extra: str) -> dict[str, str]:
    env = clean_env(PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(run_dir.parent / "home"), RECIPE_RUN_ID="listen",
                    RECIPE_RAY_PORT_BASE=str(free_block(400, lo=12000, hi=30000)), RECIPE_RAY_NUM_CPUS="1",
                    RECIPE_RAY_TEMP_DIR=str(ray_tmp), RECIPE_RAY_READY_TIMEOUT="90", MASTER_ADDR="127.0.0.1",
                    RECIPE_NODES="1", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS",
              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(k, None)
    env.update(extra)
    return env


def listening(root: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP listener and bound UDP socket of ROOT's process tree."""
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    pids = {p.pid: p for p in procs}
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in pids and c.laddr and (c.status == psutil.CONN_LISTEN or c.type == 2):  # 2: SOCK_DGRAM
            try:
                name = pids[c.pid].name()
            except psutil.NoSuchProcess:
                name = "?"
            found.append((c.laddr.ip, c.laddr.port, name))
    return sorted(found)


def end_tree(proc: subprocess.Popen) -> None:
    """End only what this test started: the session it was started in (start_new_session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_run(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path, Path, Path]:
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    mark, go = run_dir / "driver-started", run_dir / "go"
    # Output to a file, not a pipe: Ray's daemons inherit the descriptors and would hold a pipe open.
    with open(run_dir / "logs" / "run.log", "w") as log:
        proc = subprocess.Popen(["bash", "-c", SCRIPT, "run.sh", str(LAUNCH), sys.executable, "-c", DRIVER,
                                 str(mark), str(go)], env=env, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, run_dir, mark, go


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 150) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < end, f"driver did not start within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


@pytest.mark.slow
def test_one_node_ray_listens_on_loopback_only(tmp_path):
    # Ray's unix socket paths must stay under 108 characters: pytest's tmp_path is too deep.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rl-", dir="/tmp")) / "ray"
    proc, run_dir, mark, go = start_run(tmp_path, base_env(ray_tmp, tmp_path / "run"))
    log = run_dir / "logs" / "run.log"
    try:
        wait_for(mark, proc, log)
        socks = listening(proc.pid)
        go.touch()
        rc = proc.wait(timeout=120)
    finally:
        end_tree(proc)
        shutil.rmtree(ray_tmp.parent, ignore_errors=True)
    names = {n for _, _, n in socks}
    assert "gcs_server" in names and "raylet" in names, socks  # we saw Ray's own servers
    assert [s for s in socks if s[0] not in LOOPBACK] == [], socks
    assert rc == 0, log.read_text()[-3000:]
    assert "driver done" in log.read_text()


@pytest.mark.slow
def test_cluster_ray_requires_the_token_which_no_run_file_holds(tmp_path):
    token = secrets.token_hex(32)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    env = base_env(ray_tmp / "head", tmp_path / "run", RAY_AUTH_TOKEN=token)
    # Without a token a node of a cluster refuses to start: one line, exit 2.
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    p = subprocess.Popen(["bash", str(RAY_NODE), "head", "127.0.0.1", "0"], env=no_token, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        end_tree(p)
    assert p.returncode == 2 and "RAY_AUTH_TOKEN is not set" in err and len(err.splitlines()) == 1, err

    # The ports of the head: what ray_node.sh would compute from the base, in a file-free form.
    ports = subprocess.run(["bash", "-c", f'source {LAUNCH} && recipe_ray_defaults && echo $RECIPE_RAY_PORT '
                            '$RECIPE_RAY_DASHBOARD_PORT'], env=env, capture_output=True, text=True, check=True)
    gcs, dashboard = ports.stdout.split()
    head_log = tmp_path / "head.log"
    with open(head_log, "w") as out:
        head = subprocess.Popen(["bash", str(RAY_NODE), "head", "127.0.0.1", "0"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait = subprocess.run(["bash", str(RAY_NODE), "wait", f"127.0.0.1:{gcs}", "1", "0"], env=env,
                              capture_output=True, text=True, timeout=150)
        assert wait.returncode == 0, wait.stderr + head_log.read_text()[-3000:]
        assert token not in " ".join(" ".join(p.cmdline()) for p in psutil.Process(head.pid).children(recursive=True))

        # A client without the token is refused, by the job API and by the GCS; with it, accepted.
        submit = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--", "python", "-c",
                  "print('hello from the job')"]
        refused = subprocess.run(submit, env=no_token, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "hello from the job" not in refused.stdout, refused.stdout
        assert "401" in refused.stdout + refused.stderr or "auth" in (refused.stdout + refused.stderr).lower()
        gcs_client = [sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{gcs}'); print('joined')"]
        refused = subprocess.run(gcs_client, env=no_token, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "joined" not in refused.stdout, refused.stdout + refused.stderr[-2000:]
        # A client of the cluster says it uses the token, as launch.sh does (recipe_ray_token).
        accepted = subprocess.run(submit, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                                  timeout=120)
        assert accepted.returncode == 0 and "hello from the job" in accepted.stdout, accepted.stderr[-2000:]

        # A run joining it (RECIPE_RAY_ADDRESS): its job runs, and the token is in none of its files.
        proc, run_dir, mark, go = start_run(tmp_path, {**env, "RECIPE_RAY_ADDRESS": f"127.0.0.1:{gcs}",
                                                       "RECIPE_RAY_DASHBOARD_PORT": dashboard})
        go.touch()
        try:
            rc = proc.wait(timeout=150)
        finally:
            end_tree(proc)
        log = (run_dir / "logs" / "run.log").read_text()
        assert rc == 0 and "driver done" in log, log[-3000:]
    finally:
        end_tree(head)
    holding = [str(f) for d in (run_dir, ray_tmp, tmp_path / "home") for f in d.rglob("*")
               if f.is_file() and not f.is_symlink() and token.encode() in f.read_bytes()]
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert holding == []


def test_plan_names_the_ray_token_and_never_holds_it(tmp_path):
    token = secrets.token_hex(32)
    p = recipe("plan", "nemotron3_nano_tiny", "--format", "json", env=clean_env(RAY_AUTH_TOKEN=token))
    assert p.returncode == 0, p.stderr
    assert token not in p.stdout + p.stderr
    plan = json.loads(p.stdout)
    assert plan["env"]["RAY_AUTH_TOKEN"] == "$RAY_AUTH_TOKEN"  # passed by name, as the other secrets
