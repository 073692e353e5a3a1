"""Pick free TCP ports for a run's Ray cluster, so concurrent runs on one host never collide."""

from __future__ import annotations

import random
import socket


def _free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_block(size: int, lo: int = 20000, hi: int = 60000, tries: int = 200, rng: random.Random | None = None) -> int:
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
