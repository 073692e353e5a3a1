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
            local = v.removeprefix("file://")
            if local.startswith("/") and not Path(local).exists():
                continue  # pip ignores a missing local source with a warning; uv refuses it
            flags += ["--find-links" if key == "find-links" else "--extra-index-url", v]
    return _dedupe_pairs(flags)


def _dedupe_pairs(flags: list[str]) -> list[str]:
    """Flag/value pairs, each once (pip's config may list a source twice)."""
    pairs = list(dict.fromkeys(zip(flags[::2], flags[1::2], strict=True)))
    return [w for pair in pairs for w in pair]


def venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float | None, str]:
    """(seconds, "") or (None, the installer's last error line): a failed install is a row, not a crash."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        lines = [x.strip() for x in p.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
        return None, " / ".join(lines[:2]) or f"exit {p.returncode}"
    return time.monotonic() - t0, ""


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
            tp, pip_err = timed([str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps",
                                 "-r", str(LOCK)], env)
            py = venv(t / f"uv-{state}")
            tu, uv_err = timed([uv, "pip", "install", "-q", "--python", str(py), "--require-hashes", "--no-deps",
                        "--index-strategy", "unsafe-best-match", *pip_sources(), "-r", str(LOCK)], env)
            got = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                                 capture_output=True, text=True).stdout.strip()
            rows.append((state, tp, tu, got, pip_err or uv_err))
    n = LOCK.read_text().count("--hash=")
    print(f"install of {LOCK.relative_to(ROOT)} ({n} wheels) into a fresh venv, uv {args.uv_version}")
    print(f"{'cache':<6} {'pip s':>8} {'uv s':>8} {'uv/pip':>7}  torch (uv) / error")
    for state, tp, tu, got, err in rows:
        cell = lambda x: f"{x:8.1f}" if x is not None else f"{'failed':>8}"  # noqa: E731
        ratio = f"{tu / tp:7.2f}" if tp and tu else f"{'-':>7}"
        print(f"{state:<6} {cell(tp)} {cell(tu)} {ratio}  {got or err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
