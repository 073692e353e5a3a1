"""Install the tiny recipe's hash lock into a fresh venv with pip and with uv, cold and warm.

    python bench/bench_bootstrap.py [--uv-version 0.13.9]

Cold: an empty PIP_CACHE_DIR / UV_CACHE_DIR made for the run; warm: the same cache again, into
another fresh venv. Both installers are told the same sources: uv gets pip's configured find-links
and extra index URLs (`pip config list`), so torch's CPU build comes from the same file for both.
Prints one table with the time of each and uv's ratio to pip. uv itself is installed from PyPI,
pinned, into a throwaway venv (not timed).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "recipes" / "nemotron3_nano_tiny" / "requirements.lock"


def pip_sources() -> list[str]:
    """uv flags for the find-links and extra index URLs pip is configured with here."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    flags: list[str] = []
    for key, value in re.findall(r"^\S*?(find-links|extra-index-url)='([^']*)'", out, re.M):
        for v in value.split():
            flags += ["--find-links" if key == "find-links" else "--extra-index-url", v]
    return flags


def venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uv-version", default="0.13.9")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        tools = venv(t / "tools")
        subprocess.run([str(tools), "-m", "pip", "install", "-q", f"uv=={args.uv_version}"], check=True)
        uv = str(t / "tools" / "bin" / "uv")
        env = {**os.environ, "PIP_CACHE_DIR": str(t / "pip-cache"), "UV_CACHE_DIR": str(t / "uv-cache")}
        rows = []
        for state in ("cold", "warm"):
            py = venv(t / f"pip-{state}")
            tp = timed([str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", str(LOCK)], env)
            py = venv(t / f"uv-{state}")
            tu = timed([uv, "pip", "install", "-q", "--python", str(py), "--require-hashes", "--no-deps",
                        "--index-strategy", "unsafe-best-match", *pip_sources(), "-r", str(LOCK)], env)
            got = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                                 capture_output=True, text=True).stdout.strip()
            rows.append((state, tp, tu, got))
    n = LOCK.read_text().count("--hash=")
    print(f"install of {LOCK.relative_to(ROOT)} ({n} wheels) into a fresh venv, uv {args.uv_version}")
    print(f"{'cache':<6} {'pip s':>8} {'uv s':>8} {'uv/pip':>7}  torch (uv)")
    for state, tp, tu, got in rows:
        print(f"{state:<6} {tp:8.1f} {tu:8.1f} {tu / tp:7.2f}  {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
