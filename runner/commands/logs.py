"""`recipe logs RUN [--follow]`: a run's logs/run.log, and with --follow what it writes until it ends.

The log is a received run's as much as its record: it is read only as a regular file inside the run
directory (runner/gate/files.py), and printed through console.safe, newlines and tabs kept, every
other control character (ESC and so CSI and OSC, CR, BEL, C1) shown as its escape.

RUN is a run directory, or the name of one under the runs directory. Following stops when run.json
leaves "running" (read whole each time: it is only ever replaced atomically); when it is a stale
"running" record of this host whose process is gone, so that a run killed too hard to say so is
not followed forever; or when no run.json has appeared within a minute. A run recorded on another
host cannot be probed from here: the follow then ends when its record does, or on Ctrl-C.
A follow ends on the run's verdict (stderr) and exits with the run's exit code, as `recipe run` did.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import click

from runner.console import safe
from runner.errors import (
    EXIT_CORRUPT,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_PREFLIGHT,
    EXIT_REFUSED,
    EXIT_USAGE,
    RecipeError,
)
from runner.plan.options import PathOpt
from runner.records.record import RunStatus

POLL_S = 0.5
RECORD_WAIT_S = 60.0
CHUNK = 1 << 16     # characters copied at a time: a long log is never held whole


def find_run(run: str, runs_dir: Path | None) -> Path:
    from runner.records.rundirs import runs_root

    p = Path(run)
    if p.is_dir():
        return p
    q = runs_root(runs_dir) / run
    if q.is_dir():
        return q
    raise RecipeError(safe(f"{run}: no such run directory (nor {q}); `recipe runs` lists them"), EXIT_MISSING)


def still_running(run_dir: Path, since: float) -> bool:
    """run.json says "submitted", or "running" and is not stale; with no run.json yet (a docker or slurm wrapper's inner
    run still starting), the record gets RECORD_WAIT_S to appear."""
    from runner.records.record import RunStatus, is_stale, read_record, status_of

    rec = read_record(run_dir)
    if rec is None:
        return time.monotonic() - since < RECORD_WAIT_S
    # submitted: `recipe sbatch --submit`'s job has yet to start; its `recipe exec` will write the log
    return status_of(rec) == RunStatus.SUBMITTED or (status_of(rec) == RunStatus.RUNNING and not is_stale(rec))


def copy_new(f, out) -> int:
    """Copy what the log holds now, made safe to print; the number of characters copied."""
    n = 0
    while chunk := f.read(CHUNK):
        out.write(safe(chunk, keep="\n\t"))
        n += len(chunk)
    out.flush()
    return n


# What a run's own exit can be (runner/errors.py): a record's exit_code outside them is not passed on.
RUN_EXITS = {EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PREFLIGHT, EXIT_MISSING, EXIT_CORRUPT, EXIT_REFUSED,
             EXIT_INTERRUPTED}
ENDED = {RunStatus.SUCCEEDED: EXIT_OK, RunStatus.FAILED: EXIT_FAIL, RunStatus.GATE_FAILED: EXIT_FAIL,
         RunStatus.INTERRUPTED: EXIT_INTERRUPTED, RunStatus.STALE: EXIT_INTERRUPTED,
         RunStatus.PREFLIGHT_FAILED: EXIT_PREFLIGHT}


def verdict(run_dir: Path) -> tuple[str, int]:
    """The line a follow ends on and the exit code it ends with: the record's, as `recipe run` ended."""
    from runner.commands.runs import gate_verdict
    from runner.records.record import load_record, status_of

    try:
        rec = load_record(run_dir)
    except RecipeError:
        return f"recipe: {safe(run_dir)}: no run.json appeared; the run's verdict is unknown", EXIT_MISSING
    status = status_of(rec)
    if status is None:   # data: a word this runner never writes says nothing of how the run ended
        return (f"recipe: run {safe(rec.get('run_id'))} has status {safe(rec.get('status'))}, which this runner "
                "does not write; its verdict is unknown"), EXIT_FAIL
    if status not in ENDED:   # still running on another host
        return f"recipe: run {safe(rec.get('run_id'))} has not ended (status {status})", EXIT_FAIL
    code = rec.get("exit_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) and code in RUN_EXITS else ENDED[status]
    why = rec.get("error") or rec.get("interrupted_by")
    line = (f"recipe: run {safe(rec.get('run_id'))} {status}; gate {gate_verdict(rec)}; exit {code}"
            + (f" ({safe(why)})" if isinstance(why, str) and why else ""))
    return line, code


def _present(p: Path) -> bool:
    return p.is_symlink() or p.exists()


@click.command("logs")
@click.argument("run")
@click.option("--runs-dir", type=PathOpt, help="Where to look for RUN by name (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the run writes until its record says it ended.")
def logs_cmd(run: str, runs_dir: Path | None, follow: bool) -> int:
    """Print RUN's logs/run.log (RUN: a run directory, or its name under the runs directory).

    Exits 0 once printed, 4 if there is no such run or log. With --follow: ends on the run's verdict
    and exits with the run's exit code (130 for a run killed without a verdict).
    """
    run_dir = find_run(run, runs_dir)
    log = run_dir / "logs" / "run.log"
    out = sys.stdout
    t0 = time.monotonic()
    if not _present(log):
        if not (follow and still_running(run_dir, t0)):
            raise RecipeError(safe(f"{log}: no log (the run wrote none, or {run_dir} is not a run directory)"),
                              EXIT_MISSING)
        while not _present(log) and still_running(run_dir, t0):
            time.sleep(POLL_S)
        if not _present(log):
            raise RecipeError(safe(f"{log}: the run ended without writing a log"), EXIT_MISSING)
    from runner.gate.files import EVENTS_MAX, open_regular

    try:
        raw = open_regular(log, root=run_dir, limit=EVENTS_MAX, what="log")
    except FileNotFoundError:
        raise RecipeError(safe(f"{log}: no log (a dangling link?)"), EXIT_MISSING) from None
    with io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as f:
        copy_new(f, out)
        while follow:
            if copy_new(f, out):
                continue
            if not still_running(run_dir, t0):
                copy_new(f, out)   # what it wrote between the last read and ending
                break
            time.sleep(POLL_S)
    if follow:
        line, code = verdict(run_dir)
        click.echo(line, err=True)
        return code
    return EXIT_OK
