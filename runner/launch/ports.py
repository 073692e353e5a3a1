"""Pick a free base for a run's Ray ports, so concurrent runs on one host never collide.

The layout of the ports from a base is recipes/lib/launch.sh's (`recipe_ray_ports`), which the run
script and the Slurm job's nodes use; a one-node run uses its slot 0: BASE .. BASE+SPAN-1.
tests/test_ray_ports.py holds SPAN and CEILING here to what bash computes. CEILING is the start of
Linux's ephemeral range (net.ipv4.ip_local_port_range 32768-60999 by default: the kernel hands out
ports there to every outgoing connection, so a port found free there may be taken by the time Ray
binds it). Bases are drawn from [PORT_LO, CEILING - SPAN).
"""

from __future__ import annotations

import os
import random
import socket

PORT_LO = 10000  # the lowest base this picker draws (the scheme itself allows 1024)
SPAN = 400  # slot 0 of the scheme: head ports, node ports and 200 worker ports, BASE .. BASE+399
CEILING = 32768  # RECIPE_RAY_PORT_CEILING in launch.sh: no port of the scheme reaches it


def _free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_block(size: int, lo: int = PORT_LO, hi: int | None = None, tries: int = 200,
               rng: random.Random | None = None) -> int:
    """First port of `size` consecutive free ports in [lo, hi) (hi: the scheme's ceiling)."""
    hi = CEILING if hi is None else hi
    rng = rng or random.Random()
    for _ in range(tries):
        base = rng.randrange(lo, hi - size)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise OSError(f"no block of {size} free TCP ports found in [{lo}, {hi})")


def ray_ports() -> dict[str, str]:
    """A base whose whole one-node block is free right now."""
    return {"RECIPE_RAY_PORT_BASE": str(free_block(SPAN))}


def ports_in_use(base: int) -> list[int]:
    """The ports of the one-node block from `base` that something holds now."""
    return [p for p in range(base, base + SPAN) if not _free(p)]


def launch_env(run_id: str) -> dict[str, str]:
    """Per-run Ray ports and temp dir, unless joining a cluster someone else started (RECIPE_RAY_ADDRESS)."""
    if os.environ.get("RECIPE_RAY_ADDRESS"):
        return {"RECIPE_RAY_ADDRESS": os.environ["RECIPE_RAY_ADDRESS"]}
    # Short temp dir: Ray's unix socket paths below it must stay under ~107 bytes.
    return {**ray_ports(), "RECIPE_RAY_TEMP_DIR": f"/tmp/recipe-ray-{run_id[-6:]}"}
