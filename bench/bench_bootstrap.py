"""Time the bootstrap of the tiny recipe's environment with pip and with uv, cold and warm.

    python3 bench/bench_bootstrap.py [--extras tiny,report]

Each row runs the real `ci/bootstrap.sh EXTRAS` (what `just run nemotron3_nano_tiny` runs first) into a
fresh venv and a fresh tools dir, with RECIPE_INSTALLER=pip or uv. Cold: empty PIP_CACHE_DIR and
UV_CACHE_DIR made for the run (uv itself is then installed from PyPI too, and counted); warm: the same
caches again, as on a machine that installed them before, with a fresh clone's empty .tools/. The last
column says whether the venv holds exactly the wheels the pip venv holds (name, version and wheel tag),
so a faster installer that picked another wheel shows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = """import importlib.metadata as m
for d in m.distributions():
    tags = sorted(x for x in (d.read_text("WHEEL") or "").splitlines() if x.startswith("Tag:"))
    print(d.metadata["Name"].lower(), d.version, *tags)"""


def bootstrap(t: Path, installer: str, state: str, extras: str) -> tuple[float | None, set[str], str]:
    """(seconds or None, the venv's wheels, the error's last lines)."""
    venv = t / f"venv-{installer}-{state}"
    env = {**os.environ, "RECIPE_VENV": str(venv), "RECIPE_TOOLS": str(t / f"tools-{installer}-{state}"),
           "RECIPE_INSTALLER": installer, "RECIPE_LINK_DIR": "",
           "PIP_CACHE_DIR": str(t / "pip-cache"), "UV_CACHE_DIR": str(t / "uv-cache")}
    t0 = time.monotonic()
    p = subprocess.run([str(ROOT / "ci" / "bootstrap.sh"), extras], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=False)
    took = time.monotonic() - t0
    if p.returncode != 0:
        return None, set(), " / ".join(p.stderr.strip().splitlines()[-2:])
    wheels = subprocess.run([str(venv / "bin" / "python"), "-c", WHEELS], capture_output=True, text=True).stdout
    # pip and setuptools come with the venv (python -m venv), pip upgraded only on the pip path
    return took, {w for w in wheels.splitlines() if not w.startswith(("pip ", "recipe-bundle "))}, ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extras", default="tiny,report", help="what the bootstrap installs (default: the tiny run's)")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for state in ("cold", "warm"):
            for installer in ("pip", "uv"):
                rows[installer, state] = bootstrap(Path(tmp), installer, state, args.extras)
                print(f"  {installer} {state}: {rows[installer, state][0]}", file=sys.stderr)
    print(f"ci/bootstrap.sh {args.extras} into a fresh venv and tools dir, {os.cpu_count()} CPUs")
    print(f"{'cache':<6} {'pip s':>7} {'uv s':>7} {'uv/pip':>7}  uv's wheels = pip's")
    for state in ("cold", "warm"):
        (tp, wp, ep), (tu, wu, eu) = rows["pip", state], rows["uv", state]
        cell = lambda x: f"{x:7.1f}" if x is not None else f"{'failed':>7}"  # noqa: E731
        ratio = f"{tu / tp:7.2f}" if tp and tu else f"{'-':>7}"
        same = "yes" if wp and wp == wu else "no: " + ", ".join(sorted(wp ^ wu)[:4]) if wp and wu else ""
        print(f"{state:<6} {cell(tp)} {cell(tu)} {ratio}  {same or ep or eu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
