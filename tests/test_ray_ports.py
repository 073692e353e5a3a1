"""The one Ray port scheme (recipes/lib/launch.sh recipe_ray_ports), as bash computes it, and the
runner's side of it: the block it picks and checks is exactly what slot 0 of the scheme uses."""

from __future__ import annotations

import socket
import subprocess

import pytest
from conftest import ROOT, clean_env

from runner.launch.ports import CEILING, PORT_LO, SPAN, ray_ports
from runner.launch.preflight import check_ports

PORT_HI = CEILING
PORT_VARS = ("RECIPE_RAY_PORT", "RECIPE_RAY_DASHBOARD_PORT", "RECIPE_RAY_CLIENT_PORT", "RECIPE_RAY_NODE_MANAGER_PORT",
             "RECIPE_RAY_OBJECT_MANAGER_PORT", "RECIPE_RAY_AGENT_GRPC_PORT", "RECIPE_RAY_AGENT_HTTP_PORT",
             "RECIPE_RAY_METRICS_PORT", "RECIPE_RAY_RUNTIME_ENV_AGENT_PORT")


def scheme(call: str, **env: str) -> dict[str, int]:
    """The RECIPE_RAY_* ports bash exports after `call` (after sourcing launch.sh)."""
    script = f"source {ROOT}/recipes/lib/launch.sh; {call}; env | grep '^RECIPE_RAY_.*PORT='"
    p = subprocess.run(["bash", "-c", script], env=clean_env(**env), capture_output=True, text=True, timeout=30,
                       check=True)
    return {k: int(v) for k, v in (line.split("=", 1) for line in p.stdout.split())}


def ports_of(env: dict[str, int]) -> set[int]:
    workers = range(env["RECIPE_RAY_MIN_WORKER_PORT"], env["RECIPE_RAY_MAX_WORKER_PORT"] + 1)
    return {env[v] for v in PORT_VARS} | set(workers)


def test_a_local_run_uses_exactly_the_block_the_runner_picked():
    base = int(ray_ports()["RECIPE_RAY_PORT_BASE"])
    env = scheme("recipe_ray_defaults", RECIPE_RAY_PORT_BASE=str(base))
    used = ports_of(env)
    assert len(used) == len(PORT_VARS) + 200  # nothing shared between services
    assert min(used) == base and max(used) == base + SPAN - 1
    assert base + SPAN <= PORT_HI  # below the ephemeral range
    assert (SPAN, PORT_HI) == (400, 32768)  # the runner's constants are the layout launch.sh computes
    ceiling = subprocess.run(["bash", "-c", f"source {ROOT}/recipes/lib/launch.sh; echo $RECIPE_RAY_PORT_CEILING"],
                             env=clean_env(), capture_output=True, text=True, timeout=30, check=True).stdout
    assert int(ceiling) == CEILING


@pytest.mark.parametrize("base", [PORT_LO, PORT_HI - SPAN - 1], ids=["lowest", "highest"])
def test_every_base_the_runner_can_draw_is_one_the_scheme_takes(base):
    # free_block draws bases from [PORT_LO, PORT_HI - span): both ends must run, not only a lucky draw
    env = scheme("recipe_ray_defaults", RECIPE_RAY_PORT_BASE=str(base))
    assert min(ports_of(env)) == base and max(ports_of(env)) == base + SPAN - 1 < PORT_HI


def test_eight_node_slots_of_one_job_never_share_a_port_and_stay_below_the_ephemeral_range():
    base = 32368 - 7 * 200  # the largest base with 8 slots
    slots = [scheme(f"recipe_ray_ports {base} {s}") for s in range(8)]
    head = {slots[0][v] for v in PORT_VARS[:3]}
    own = [ports_of(s) - head for s in slots]
    assert all(s[v] == slots[0][v] for s in slots for v in PORT_VARS[:3])  # one head for all
    assert sum(map(len, own)) == len(set().union(*own)) == 8 * (len(PORT_VARS) - 3 + 200)
    assert max(max(o) for o in own) < PORT_HI


@pytest.mark.parametrize("call, message", [
    ("recipe_ray_ports 32369 0", "Ray port base (node slot 0) must be an integer from 1024 to 32368"),
    ("recipe_ray_ports 30969 7", "Ray port base (node slot 7) must be an integer from 1024 to 30968"),
    ("recipe_ray_ports 12000 8", "Ray node slot must be an integer from 0 to 7"),
    ("recipe_ray_ports '1$(touch /tmp/x)' 0", "Ray port base (node slot 0) must be an integer"),
])
def test_the_scheme_refuses_what_would_leave_its_range(call, message):
    p = subprocess.run(["bash", "-c", f"source {ROOT}/recipes/lib/launch.sh; {call}"], env=clean_env(),
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 2 and message in p.stderr


def test_ports_preflight_names_a_taken_port_in_the_block():
    env = ray_ports()
    base = int(env["RECIPE_RAY_PORT_BASE"])
    assert check_ports(env).status == "ok"
    with socket.socket() as held:  # a worker port, far from the service ports, is held by someone
        held.bind(("0.0.0.0", base + 250))
        held.listen()
        c = check_ports(env)
    assert c.status == "fail" and f"in use: {base + 250}" in c.detail


def test_ports_preflight_has_nothing_to_check_when_joining_a_cluster():
    c = check_ports(launch_env_of(RECIPE_RAY_ADDRESS="10.0.0.1:6379"))
    assert c.status == "n/a" and "joining Ray at 10.0.0.1:6379" in c.detail


def launch_env_of(**environ: str) -> dict[str, str]:
    """What the runner gives a run (runner.launch.ports.launch_env) under this environment."""
    import os
    from unittest import mock

    from runner.launch.ports import launch_env

    with mock.patch.dict(os.environ, environ):
        return launch_env("20261130T000000Z-test-abcdef")
