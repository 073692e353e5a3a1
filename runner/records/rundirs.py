"""Where run directories go and what they are called: the one place that decides.

    --run-dir DIR                          exactly DIR
    --runs-dir DIR / $RECIPE_RUNS_DIR      DIR/<run id>
    otherwise                              ./runs/<run id>

A run id is <UTC time>-<recipe>-<cell>-<6 hex>; `recipe plan` shows a run directory named
<recipe>-plan under the same parent, which it never creates.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets as pysecrets
from pathlib import Path


def runs_root(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("RECIPE_RUNS_DIR") or Path.cwd() / "runs").resolve()


def new_run_id(recipe: str, cell: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{recipe}-{cell}-{pysecrets.token_hex(3)}"


def run_dir_for(run_dir: Path | None, runs_dir: Path | None, run_id: str) -> Path:
    """The run directory of a new run: --run-dir if given, else RUNS_DIR/<run id>."""
    return (run_dir or runs_root(runs_dir) / run_id).resolve()


def plan_run_dir(recipe: str, run_id: str = "plan") -> Path:
    """The run directory a plan shows when none is given (never created)."""
    return runs_root() / f"{recipe}-{run_id}"
