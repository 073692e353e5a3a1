"""What the caller's environment adds to a job, read once when the plan is rendered: the forwarded
NCCL/Gloo variables, the job's PYTHONPATH, NCCL's NVLink SHARP switch. Each value is checked: a
control character has no place in a job environment value (options.clean: it would reach Ray's runtime env
JSON)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

from runner.plan.options import FORWARDED_ENV, clean


def forwarded(environ: Mapping[str, str]) -> dict[str, str]:
    """The network interfaces and NCCL's debug output, where the caller set them (even to "")."""
    return {k: clean(k, environ[k]) for k in FORWARDED_ENV if k in environ}


def pythonpath(first: list[str], environ: Mapping[str, str], bundle: str, inherit: bool) -> str:
    """`first`, then (inherit: the job runs in the caller's own environment) the caller's PYTHONPATH
    entries, without empties, duplicates or the bundle root (the runner's path, not the job's): as
    upstream's launcher builds it (miles 78527b91 miles/utils/external_utils/command_utils.py)."""
    out: list[str] = []
    rest = environ.get("PYTHONPATH", "").split(":") if inherit else []
    for entry in [*first, *rest]:
        if entry and entry.rstrip("/") != bundle.rstrip("/") and entry not in out:
            out.append(entry)
    return clean("PYTHONPATH", ":".join(out))


def nvls_enabled(environ: Mapping[str, str]) -> str:
    """NCCL's NVLink SHARP only where NVLinks exist: the caller's NCCL_NVLS_ENABLE, else a probe of
    `nvidia-smi topo -m` on this host (0 where there is no nvidia-smi)."""
    if environ.get("NCCL_NVLS_ENABLE", "") != "":
        return clean("NCCL_NVLS_ENABLE", environ["NCCL_NVLS_ENABLE"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "0"
    try:
        topo = subprocess.run([smi, "topo", "-m"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "0"
    return "1" if re.search(r"\bNV[0-9]+\b", topo) else "0"


def master_addr(environ: Mapping[str, str]) -> str:
    """The head's address the job connects to: the caller's MASTER_ADDR, else this host's loopback."""
    return clean("MASTER_ADDR", environ.get("MASTER_ADDR") or "127.0.0.1")
