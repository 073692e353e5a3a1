"""Calling a function of the bundle's shell helpers (recipes/lib/launch.sh) from the runner.

Where a rule lives in the shell (reading model_args.txt, the Ray port layout), the runner asks the
shell instead of restating it. The call gets the environment a run script gets from the runner's
dry run (SCRIPT_ENV_KEYS, no BASH_ENV: bash -c would source that first, and what it prints would
be read as the answer).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runner.errors import UsageError
from runner.paths import recipes_dir

# The caller's variables a run script's environment starts from (runner/plan/dryrun.py adds its own).
SCRIPT_ENV_KEYS = ("PATH", "HOME", "LANG")


def launch_lib() -> Path:
    return recipes_dir() / "lib" / "launch.sh"


def call(snippet: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `snippet` in bash with launch.sh as $1 and `args` as $2...; bytes out, not checked.

    A bundle without recipes/lib is a usage error naming it; a missing bash raises OSError."""
    lib = launch_lib()
    if not lib.is_file():
        raise UsageError(f"{lib}: missing; the bundle's run-script helpers are needed here (a bundle holds "
                         "recipes/lib)")
    env = {k: os.environ[k] for k in SCRIPT_ENV_KEYS if k in os.environ}
    return subprocess.run(["bash", "-c", snippet, "recipe-shell-helper", str(lib), *args], env=env,
                          capture_output=True, timeout=timeout, check=False)
