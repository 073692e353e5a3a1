"""What machine and which bundle a run used: host, CPU, GPUs, driver, bundle commit."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from runner import __version__
from runner.paths import bundle_root


def _run(argv: list[str], timeout: float = 10) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


@functools.cache
def gpus() -> list[dict[str, str]]:
    """One dict per visible NVIDIA GPU (name, memory_mib, driver); [] when there is no driver.

    Asked once per process: the GPU, driver and run-record checks all read the same answer."""
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
    if not out:
        return []
    rows = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            rows.append({"name": parts[0], "memory_mib": parts[1], "driver": parts[2]})
    return rows


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bundle_git() -> dict[str, object]:
    """The bundle's git commit and whether the tree is dirty; from the image's env when not a checkout."""
    root = bundle_root()
    commit = os.environ.get("RECIPE_BUNDLE_COMMIT")
    if (root / ".git").exists():
        head = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
        status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
        if head:
            return {"commit": head.strip(), "dirty": bool(status and status.strip()), "source": "git"}
    return {"commit": commit or "unknown", "dirty": None, "source": "image" if commit else "none"}


def host() -> dict[str, object]:
    g = gpus()
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": g,
        "gpu_count": len(g),
        "driver": g[0]["driver"] if g else None,
        "runner_version": __version__,
    }
