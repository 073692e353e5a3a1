"""Pick free TCP ports for a run's Ray cluster, so concurrent runs on one host never collide.

Every port is drawn from [PORT_LO, PORT_HI), below Linux's ephemeral range (net.ipv4.ip_local_port_range
defaults to 32768-60999): the kernel hands out ports there to every outgoing connection, so a port
found free in that range may be taken by the time Ray binds it. The sbatch script's per-job blocks
(10000 + (job % 10) * 2000) lie below PORT_HI too.
"""

from __future__ import annotations

import os
import random
import socket

PORT_LO, PORT_HI = 10000, 32768


def _free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_block(size: int, lo: int = PORT_LO, hi: int = PORT_HI, tries: int = 200,
               rng: random.Random | None = None) -> int:
    """First port of `size` consecutive free ports in [lo, hi)."""
    rng = rng or random.Random()
    for _ in range(tries):
        base = rng.randrange(lo, hi - size)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise OSError(f"no block of {size} free TCP ports found in [{lo}, {hi})")


RAY_PORT_VARS = ("RECIPE_RAY_PORT", "RECIPE_RAY_DASHBOARD_PORT", "RECIPE_RAY_CLIENT_PORT",
                 "RECIPE_RAY_NODE_MANAGER_PORT", "RECIPE_RAY_OBJECT_MANAGER_PORT", "RECIPE_RAY_AGENT_GRPC_PORT",
                 "RECIPE_RAY_AGENT_HTTP_PORT", "RECIPE_RAY_METRICS_PORT")


def ray_ports(worker_ports: int = 200) -> dict[str, str]:
    """Explicit ports for every Ray service plus a worker port range, all free right now."""
    base = free_block(len(RAY_PORT_VARS) + worker_ports)
    env = {name: str(base + i) for i, name in enumerate(RAY_PORT_VARS)}
    env["RECIPE_RAY_MIN_WORKER_PORT"] = str(base + len(RAY_PORT_VARS))
    env["RECIPE_RAY_MAX_WORKER_PORT"] = str(base + len(RAY_PORT_VARS) + worker_ports - 1)
    return env


def ports_in_use(env: dict[str, str]) -> list[int]:
    ports = [int(env[n]) for n in RAY_PORT_VARS if n in env]
    return [p for p in ports if not _free(p)]


def launch_env(run_id: str) -> dict[str, str]:
    """Per-run Ray ports and temp dir, unless joining a cluster someone else started (RECIPE_RAY_ADDRESS)."""
    if os.environ.get("RECIPE_RAY_ADDRESS"):
        return {"RECIPE_RAY_ADDRESS": os.environ["RECIPE_RAY_ADDRESS"]}
    # Short temp dir: Ray's unix socket paths below it must stay under ~107 bytes.
    return {**ray_ports(), "RECIPE_RAY_TEMP_DIR": f"/tmp/recipe-ray-{run_id[-6:]}"}
