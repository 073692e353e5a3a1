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


RECIPE_CHANGES_MAX = 50  # paths kept in a record: enough to see what; the count says how many


def bundle_git(recipe_dir: Path | None = None) -> dict[str, object]:
    """The bundle's git commit and whether the tree is dirty; from the image's env when not a checkout.

    recipe_dir: the run's recipe directory. Its untracked and modified files are not in the commit
    the record names (a recipe not yet added to git is all untracked), so they make the run dirty
    too, and are listed as recipe_changes ("?? path" untracked, " M path" modified, as git prints them)."""
    root = bundle_root()
    commit = os.environ.get("RECIPE_BUNDLE_COMMIT")
    if (root / ".git").exists():
        head = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
        status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
        if head:
            out: dict[str, object] = {"commit": head.strip(), "dirty": bool(status and status.strip()),
                                      "source": "git"}
            if recipe_dir is not None:
                changes = recipe_changes(root, recipe_dir)
                out["recipe_changes"] = changes[:RECIPE_CHANGES_MAX]
                out["recipe_changes_count"] = len(changes)
                out["dirty"] = bool(out["dirty"] or changes)
            return out
    return {"commit": commit or "unknown", "dirty": None, "source": "image" if commit else "none"}


def recipe_changes(root: Path, recipe_dir: Path) -> list[str]:
    """git's status lines (XY path, path from the repository root) of what under recipe_dir differs from
    the bundle's HEAD, untracked files included and ignored ones not; a recipe directory outside the
    bundle's repository (which its commit cannot hold) is one line, "?? <dir>/"."""
    out = _run(["git", "-C", str(root), "status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
                str(Path(recipe_dir).resolve())])
    if out is None:
        return [f"?? {recipe_dir}/"]
    entries = out.split("\0")
    lines, i = [], 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) > 3:
            lines.append(entry)
            if entry[0] in "RC":   # a rename or copy: its source path follows as an entry of its own
                i += 1
    return lines


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
