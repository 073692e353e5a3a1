"""Print, one a line, the uv flags for the package sources pip is configured with here.

    python3 ci/uv_sources.py        (ci/bootstrap.sh, ci/lock_tiny.sh and bench/bench_bootstrap.py use it)

uv does not read pip's configuration (pip.conf, PIP_* variables), so a machine whose pip finds a wheel
through a configured find-links or extra index (torch's CPU build, a mirror) would send uv elsewhere.
Each of index-url, extra-index-url and find-links is taken from the scope pip would use (environment
over the install section over global); a local path that does not exist is dropped (pip ignores it
with a warning, uv refuses it). pip pools the files of all its indexes; uv takes a version's files
from the first index that has it. So pip's main index (PyPI unless configured) comes first, which
mirrors usually copy only part of, and with more than one source uv weighs the versions of every
index (`--index-strategy unsafe-best-match`) instead of stopping at the first that has the name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

KEYS = ["index-url", "extra-index-url", "find-links"]
PYPI = "https://pypi.org/simple"
SCOPES = ["global", "install", ":env:"]   # pip's order: a later scope overrides an earlier one


def parse(config_list: str) -> list[str]:
    """uv flags from the output of `pip config list` (lines like global.find-links='/opt/wheels')."""
    chosen: dict[str, tuple[int, str]] = {}
    for scope, key, value in re.findall(r"^(:env:|global|install)\.([a-z-]+)='(.*)'$", config_list, re.M):
        rank = SCOPES.index(scope)
        if key in KEYS and rank >= chosen.get(key, (-1, ""))[0]:
            chosen[key] = (rank, value)
    value = {k: chosen.get(k, (0, ""))[1].split() for k in KEYS}
    indexes = (value["index-url"][-1:] or [PYPI]) + value["extra-index-url"]
    flags: list[str] = []
    for flag, v in [("--index", i) for i in indexes] + [("--find-links", f) for f in value["find-links"]]:
        local = v.removeprefix("file://")
        if (local.startswith("/") and not Path(local).exists()) or v in flags:
            continue
        flags += [flag, v]
    if len(flags) > 2:
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags


def main() -> int:
    p = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    print("\n".join(parse(p.stdout if p.returncode == 0 else "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
