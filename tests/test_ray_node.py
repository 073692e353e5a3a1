"""recipes/lib/ray_node.sh with a real Ray: a head in the foreground that stops on TERM, and the
bounded readiness wait that names the node that never joined."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

from runner.launch.ports import free_block

pytestmark = pytest.mark.slow

RAY_NODE = ROOT / "recipes" / "lib" / "ray_node.sh"


def ray_env(ray_tmp: Path) -> dict[str, str]:
    base = free_block(220, lo=12000, hi=30000)
    names = ["PORT", "DASHBOARD_PORT", "CLIENT_PORT", "NODE_MANAGER_PORT", "OBJECT_MANAGER_PORT", "AGENT_GRPC_PORT",
             "AGENT_HTTP_PORT", "METRICS_PORT", "RUNTIME_ENV_AGENT_PORT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECIPE_")}
    env.update({f"RECIPE_RAY_{n}": str(base + i) for i, n in enumerate(names)})
    env.update(RECIPE_RAY_MIN_WORKER_PORT=str(base + 20), RECIPE_RAY_MAX_WORKER_PORT=str(base + 219),
               RECIPE_RAY_TEMP_DIR=str(ray_tmp), PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
               RAY_AUTH_TOKEN=secrets.token_hex(32))  # a Ray across nodes requires one (launch.sh)
    return env


def processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in argv:
                found.append(f"{d.name}: {argv[:200]}")
    return found


def run_wait(tmp_path: Path, address: str, nodes: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out, err = tmp_path / "wait.out", tmp_path / "wait.err"
    with open(out, "w") as o, open(err, "w") as e:
        rc = subprocess.run(["bash", str(RAY_NODE), "wait", address, nodes, "0"], stdout=o, stderr=e, env=env,
                            timeout=150).returncode
    return subprocess.CompletedProcess([], rc, out.read_text(), err.read_text())


def test_wait_names_the_node_that_never_joined_and_head_stops_on_term(tmp_path):
    # Ray's unix socket paths must stay under 108 characters: pytest's tmp_path is too deep.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))
    env = ray_env(ray_tmp)
    address = f"127.0.0.2:{env['RECIPE_RAY_PORT']}"
    head_log = tmp_path / "head.log"
    # Output to files, not pipes: Ray's daemons inherit the descriptors and would hold a pipe open.
    with open(head_log, "w") as log:
        head = subprocess.Popen(["bash", str(RAY_NODE), "head", "127.0.0.2", "0"], env=env, start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        p = run_wait(tmp_path, address, "2", env={**env, "RECIPE_RAY_READY_TIMEOUT": "20",
                                                  "RECIPE_RAY_EXPECT_HOSTS": "n1=127.0.0.2,n2=127.0.0.9"})
        took = time.monotonic() - t0
        assert p.returncode == 1, p.stdout + p.stderr
        assert "ray not ready after 20 s" in p.stderr and "1/2 node(s)" in p.stderr
        assert "never joined: n2 (127.0.0.9)" in p.stderr and "n1" not in p.stderr.split("never joined:")[1]
        assert took < 60

        ok = run_wait(tmp_path, address, "1", env=env)
        assert ok.returncode == 0 and "ray ready: 1 node(s)" in ok.stdout
    finally:
        t1 = time.monotonic()
        os.kill(head.pid, signal.SIGTERM)  # what scancel --signal=TERM does to the step
        rc = head.wait(timeout=60)
        stopped = time.monotonic() - t1
        err = head_log.read_text()
    assert rc == 143, err[-2000:]
    assert "ray stopped" in err and "did not stop" not in err, err[-2000:]
    assert stopped < 20, f"ray head took {stopped:.0f} s to stop"
    assert not processes_mentioning(str(ray_tmp))  # nothing of that Ray is left
    shutil.rmtree(ray_tmp, ignore_errors=True)
