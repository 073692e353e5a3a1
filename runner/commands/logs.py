"""`recipe logs RUN [--follow]`: a run's logs/run.log, and with --follow what it writes until it ends.

RUN is a run directory, or the name of one under the runs directory. Following stops when run.json
leaves "running" (read whole each time: it is only ever replaced atomically); when it is a stale
"running" record of this host whose process is gone, so that a run killed too hard to say so is
not followed forever; or when no run.json has appeared within a minute. A run recorded on another
host cannot be probed from here: the follow then ends when its record does, or on Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from runner.errors import EXIT_MISSING, RecipeError
from runner.plan.options import PathOpt

POLL_S = 0.5
RECORD_WAIT_S = 60.0


def find_run(run: str, runs_dir: Path | None) -> Path:
    from runner.records.rundirs import runs_root

    p = Path(run)
    if p.is_dir():
        return p
    q = runs_root(runs_dir) / run
    if q.is_dir():
        return q
    raise RecipeError(f"{run}: no such run directory (nor {q}); `recipe runs` lists them", EXIT_MISSING)


def still_running(run_dir: Path, since: float) -> bool:
    """run.json says "running" and is not stale; with no run.json yet (a docker or slurm wrapper's inner
    run still starting), the record gets RECORD_WAIT_S to appear."""
    from runner.records.record import is_stale, read_record

    rec = read_record(run_dir)
    if rec is None:
        return time.monotonic() - since < RECORD_WAIT_S
    return rec.get("status") == "running" and not is_stale(rec)


def copy_new(f, out) -> int:
    chunk = f.read()
    if chunk:
        out.write(chunk)
        out.flush()
    return len(chunk)


@click.command("logs")
@click.argument("run")
@click.option("--runs-dir", type=PathOpt, help="Where to look for RUN by name (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the run writes until its record says it ended.")
def logs_cmd(run: str, runs_dir: Path | None, follow: bool) -> None:
    """Print RUN's logs/run.log (RUN: a run directory, or its name under the runs directory).

    Exits 0 once printed (with --follow: once the run has ended), 4 if there is no such run or log.
    """
    run_dir = find_run(run, runs_dir)
    log = run_dir / "logs" / "run.log"
    out = sys.stdout
    t0 = time.monotonic()
    if not log.is_file():
        if not (follow and still_running(run_dir, t0)):
            raise RecipeError(f"{log}: no log (the run wrote none, or {run_dir} is not a run directory)",
                              EXIT_MISSING)
        while not log.is_file() and still_running(run_dir, t0):
            time.sleep(POLL_S)
        if not log.is_file():
            raise RecipeError(f"{log}: the run ended without writing a log", EXIT_MISSING)
    with open(log, encoding="utf-8", errors="replace", newline="") as f:
        copy_new(f, out)
        while follow:
            if copy_new(f, out):
                continue
            if not still_running(run_dir, t0):
                copy_new(f, out)   # what it wrote between the last read and ending
                break
            time.sleep(POLL_S)
