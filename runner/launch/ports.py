"""Pick a free base for a run's Ray ports, so concurrent runs on one host never collide.

The layout of the ports from that base is defined once, in recipes/lib/launch.sh (`recipe_ray_ports`),
for local runs and Slurm jobs alike; a one-node run uses its slot 0. This module asks that function
which ports slot 0 takes and where the scheme's ceiling is (RECIPE_RAY_PORT_CEILING, the start of
Linux's ephemeral range, net.ipv4.ip_local_port_range 32768-60999 by default: the kernel hands out
ports there to every outgoing connection, so a port found free there may be taken by the time Ray
binds it) instead of restating them. Bases are drawn from [PORT_LO, ceiling - span).
"""

from __future__ import annotations

import functools
import os
import random
import re
import socket
from dataclasses import dataclass

from runner import shellhelpers

PORT_LO = 10000  # the lowest base this picker draws (the scheme itself allows 1024)
_PROBE_BASE = 1024
_PROBE = ('source "$1" && recipe_ray_ports "$2" 0 && echo "CEILING=$RECIPE_RAY_PORT_CEILING" && '
          "env | grep '^RECIPE_RAY_.*PORT='")


@dataclass(frozen=True)
class Slot0:
    offsets: tuple[int, ...]  # the ports slot 0 uses, as offsets from its base
    ceiling: int  # no port of the scheme reaches this one

    @property
    def span(self) -> int:  # BASE..BASE+span-1 holds every port of slot 0
        return max(self.offsets) + 1


@functools.cache
def slot0() -> Slot0:
    """Slot 0 of the one scheme, as recipes/lib/launch.sh computes it."""
    p = shellhelpers.call(_PROBE, str(_PROBE_BASE), timeout=30)
    if p.returncode != 0:
        why = p.stderr.decode(errors="replace").strip()[-300:]
        raise OSError(f"{shellhelpers.launch_lib()}: recipe_ray_ports failed: {why or f'exit {p.returncode}'}")
    found = dict(line.split("=", 1) for line in p.stdout.decode().split() if re.fullmatch(r"[A-Z_]+=[0-9]+", line))
    ports = {k: int(v) - _PROBE_BASE for k, v in found.items() if k != "CEILING"}
    workers = range(ports.pop("RECIPE_RAY_MIN_WORKER_PORT"), ports.pop("RECIPE_RAY_MAX_WORKER_PORT") + 1)
    return Slot0(offsets=tuple(sorted({*ports.values(), *workers})), ceiling=int(found["CEILING"]))


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
    hi = slot0().ceiling if hi is None else hi
    rng = rng or random.Random()
    for _ in range(tries):
        base = rng.randrange(lo, hi - size)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise OSError(f"no block of {size} free TCP ports found in [{lo}, {hi})")


def ray_ports() -> dict[str, str]:
    """A base whose whole one-node block is free right now."""
    return {"RECIPE_RAY_PORT_BASE": str(free_block(slot0().span))}


def ports_in_use(base: int) -> list[int]:
    """The ports of the one-node block from `base` that something holds now."""
    return [p for p in range(base, base + slot0().span) if not _free(p)]


def launch_env(run_id: str) -> dict[str, str]:
    """Per-run Ray ports and temp dir, unless joining a cluster someone else started (RECIPE_RAY_ADDRESS)."""
    if os.environ.get("RECIPE_RAY_ADDRESS"):
        return {"RECIPE_RAY_ADDRESS": os.environ["RECIPE_RAY_ADDRESS"]}
    # Short temp dir: Ray's unix socket paths below it must stay under ~107 bytes.
    return {**ray_ports(), "RECIPE_RAY_TEMP_DIR": f"/tmp/recipe-ray-{run_id[-6:]}"}
