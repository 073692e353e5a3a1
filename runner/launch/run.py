"""One run, top to bottom: preflight, run directory and record, run script, metrics, gate.

    recipe run NAME  (or recipe replay RUN_DIR, which turns its record into the same options)
      -> build_launch (the adapter's rendered Plan, ports, dirs)              runner/plan/render.py
      -> carry_out, below, for both:
         -> backend preflight (every failure names its fix; exit 3 with what it would have run)
         -> run directory claimed, plan.json and run.sh written, run.json ("running")
         -> run.sh (logs/run.log); docker/slurm: the container or allocation, where
            `recipe exec RUN_DIR` runs the in-image checks and run.sh, finishing the same run.json
         -> metrics.jsonl + gate.json
         -> run.json (final status, exit code)
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from runner import console, hostinfo
from runner.atomicfile import write_text_atomic
from runner.checks import Check, CheckStatus, failed
from runner.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PREFLIGHT, RecipeError, StdoutClosed
from runner.frameworks.packages import recorded_versions
from runner.gate import evaluate as gate
from runner.gate import metrics
from runner.gate.expected import load_expected
from runner.gate.files import read_regular
from runner.launch.backends import backend, preflight
from runner.launch.script import log_tail
from runner.paths import launch_lib
from runner.plan.document import plan_document
from runner.plan.script import render_script
from runner.plan.spec import Launch
from runner.records.record import (
    RunRecord,
    RunStatus,
    claim_run_dir,
    create_run_dir,
    now,
    read_record,
    recipe_digest,
    recipe_file_hashes,
    recorded_env,
    status_of,
    write_json_atomic,
)

TAIL_LINES = 20  # of a failed run's log, shown when the console did not stream it
STATUS_STYLE = {CheckStatus.OK: "green", CheckStatus.FAIL: "red", CheckStatus.WARN: "yellow",
                CheckStatus.NA: "bright_black", CheckStatus.SKIPPED: "yellow"}


def print_checks(checks: list[Check]) -> None:
    """The preflight table on stderr: its status words coloured on a terminal (not under NO_COLOR), each
    detail, and the fix of a failed check, wrapped to the width in its column."""
    rows = []
    for c in checks:   # a detail's own lines, and the fix, as rows of the detail column alone
        lines = c.detail.split("\n") + ([f"fix: {c.fix}"] if c.status == CheckStatus.FAIL and c.fix else [])
        rows += [(c.status, c.name, lines[0]), *(("", "", line) for line in lines[1:])]
    shown = console.table(("status", "check", "detail"), rows, console.width(sys.stderr) - 2,
                          no_wrap=("status", "check"), right=("status",), err=True, colours=STATUS_STYLE,
                          show_header=False, gap=2)
    click.echo("\n".join("  " + line for line in shown.splitlines()), err=True)


def would_run(launch: Launch) -> list[list[str]]:
    return backend(launch.backend).commands(launch)


def report_cannot_run(launch: Launch, checks: list[Check]) -> int:
    bad = failed(checks)
    columns = console.width(sys.stderr)

    def say(text: str) -> None:
        click.echo("\n".join(console.wrap(text, columns)), err=True)

    say(f"recipe: cannot run {launch.recipe.name} (cell {launch.cell.name}, backend {launch.backend}) "
        f"on this machine; {len(bad)} preflight check(s) failed:")
    print_checks(checks)
    # No run directory exists for a refused run: the full commands go to the user's cache, one file
    # per recipe, cell and backend (the latest refusal's), so that refusals do not pile up there.
    commands = [shlex.join(cmd) for cmd in would_run(launch)]
    full = console.save_full_text(f"refused/{launch.recipe.name}-{launch.cell.name}-{launch.backend}.commands.txt",
                                  "\n".join(commands) + "\n")
    click.echo("\nIt would have run:", err=True)
    for cmd in commands:
        click.echo("  " + console.elide(cmd, columns - 2), err=True)
    if full:
        say(f"(full commands: {full})")
    click.echo("", err=True)
    say(f"(`recipe plan {launch.recipe.name} --cell {launch.cell.name}` shows the full plan; "
        "`--skip-preflight CHECK` overrides a check.)")
    return EXIT_PREFLIGHT


def provenance(launch: Launch, checks: list[Check]) -> dict:
    r = launch.recipe
    inputs = next((c for c in checks if c.name == "inputs"), None)
    files = recipe_file_hashes(r)
    return {
        "recipe": r.name,
        "recipe_digest": recipe_digest(files),
        "recipe_files": files,
        "determinism": r.determinism.tier,
        "bundle": hostinfo.bundle_git(r.dir),
        "image": launch.image,
        "image_build": _running_image(),  # base digest and recipe image id, inside a recipe image
        "backend": launch.backend,
        "cell": launch.cell.name,
        "layout": launch.cell.as_dict(),
        "nodes": launch.nodes,
        "gpus_per_node": launch.gpus_per_node,
        "seeds": {"seed": str(launch.options.seed), "rollout_seed": str(launch.options.rollout_seed)},
        "deterministic": launch.options.deterministic,
        "run_id": launch.run_id,
        "run_dir": str(launch.run_dir),
        "inputs_dir": str(launch.inputs_dir),
        "output_dir": str(launch.output_dir),
        "script_env": launch.script_env,
        "entrypoint": launch.plan.entrypoint,
        "argv": launch.plan.argv,
        "job_env": launch.plan.job_env,
        "commands": launch.plan.commands,
        "environment": recorded_env(),
        "secrets_passed": launch.secret_names,
        "preflight": [c.as_dict() for c in checks],
        "preflight_skipped": sorted(launch.skip),
        "inputs_verification": inputs.as_dict() if inputs else None,
        "doctor": next((c.data for c in checks if c.name == "image" and c.data), None),
        "host": hostinfo.host(),
        # Asked of the job's interpreter where the job runs here; a docker or Slurm run's `recipe exec` adds them.
        "packages": recorded_versions(r, launch.plan) if launch.backend == "local" else None,
    }


def _running_image() -> dict | None:
    from runner.image.recipe_image import running_image

    return running_image()


def gate_run(launch: Launch, record: RunRecord) -> bool | None:
    """Collect metrics.jsonl and evaluate the recipe's expected metrics; None if there is nothing to gate."""

    series = metrics.collect(launch.run_dir)
    metrics.write_metrics_jsonl(series, launch.run_dir / "metrics.jsonl")
    expected_path = launch.recipe.path("expected_metrics")
    if not expected_path.is_file():
        record.update(gate={"status": "absent", "detail": f"{expected_path.name} not found"})
        return None
    result = gate.evaluate(load_expected(expected_path), series)
    gate.write_gate_json(result, launch.run_dir / "gate.json")
    click.echo(gate.format_table(result), err=True)
    record.update(gate=result.as_dict())
    return result.passed


def carry_out(launch: Launch, *, given_dir: bool = False, dry_run: bool = False, notes: Sequence[str] = (),
              before_claim: Callable[[list[Check]], None] | None = None, **extra_record) -> int:
    """A built launch from preflight to gate, for `recipe run` and `recipe replay` alike.

    Preflight; on failure, exit 3 naming what is missing and what it would have run (dry_run: show the
    checks and the commands, and exit as the run would: 0, or 3 if a check failed). Then `before_claim`
    (replay: refuse a bitwise run across package versions), claim the run directory (given_dir: the
    user named it), and run_launch.
    """
    checks = preflight(launch)
    if dry_run or failed(checks):
        for note in notes:  # why auto did not pick docker: said where it explains a refusal
            click.echo(f"recipe: {note}", err=True)
    if dry_run:
        click.echo(f"recipe: dry run of {launch.recipe.name} (cell {launch.cell.name}, backend {launch.backend}); "
                   "preflight:", err=True)
        print_checks(checks)
        for cmd in would_run(launch):
            click.echo(shlex.join(cmd))
        if failed(checks):   # exit as the run would, so that a script can ask before it launches
            click.echo(f"recipe: dry run: {len(failed(checks))} preflight check(s) failed; the run would refuse "
                       f"(exit {EXIT_PREFLIGHT})", err=True)
            return EXIT_PREFLIGHT
        return EXIT_OK
    if failed(checks):
        return report_cannot_run(launch, checks)
    if before_claim is not None:
        before_claim(checks)
    try:
        if given_dir:
            claim_run_dir(launch.run_dir)
        else:
            create_run_dir(launch.run_dir.parent, launch.run_id)
    except OSError as e:  # the runs directory went read-only or full since the preflight
        raise RecipeError(f"{e.filename or launch.run_dir}: cannot create the run directory ({e.strerror}); "
                          "give --runs-dir on a writable file system with room", EXIT_PREFLIGHT) from None
    return run_launch(launch, checks, **extra_record)


def freeze(launch: Launch, checks: list[Check], **extra_record) -> RunRecord:
    """The launch, frozen into its run directory before anything runs: plan.json (what `recipe exec`
    carries out and every later reader compares with) and run.sh, the one script that carries it
    out (runner/plan/script.py), both with the paths the job sees (a container's mounts, or this
    host's); returns the run's "running" record, not yet saved."""
    write_json_atomic(launch.run_dir / "plan.json", plan_document(launch))
    lib = launch.view.bundle / "recipes" / "lib" / "launch.sh" if launch.view else launch_lib()
    write_text_atomic(launch.run_dir / "run.sh", render_script(launch.plan, lib=str(lib)))
    return RunRecord.running(launch.run_dir, **provenance(launch, checks), **extra_record)


def run_launch(launch: Launch, checks: list[Check], **extra_record) -> int:
    """Run a launch whose preflight passed; returns the process exit code."""
    be = backend(launch.backend)
    # Made before the try and saved inside it: a signal at any instant after run.json first exists
    # finds a record that finalize_on_error can finish, so no run is left saying "running".
    record = freeze(launch, checks, **extra_record)
    stage = ["start"]
    try:
        record.save()
        click.echo(f"recipe: run {launch.run_id} -> {launch.run_dir}", err=True)
        stage[0] = "script"
        if be.RUNS_EXEC:
            return _job_elsewhere(launch, record)
        return _script_then_gate(launch, record, launch.gate, stage)
    except BaseException as e:
        # Every way out leaves a final status and exit code in run.json, never "running".
        finalize_on_error(record, e, stage[0])
        if isinstance(e, OSError):  # a full disk or a file system gone read-only under the run
            raise RecipeError(f"{e.filename or launch.run_dir}: cannot write ({e.strerror}) during the {stage[0]} "
                              f"of run {launch.run_id}", EXIT_FAIL) from None
        raise


def _job_elsewhere(launch: Launch, record: RunRecord) -> int:
    """A docker or Slurm run: the backend starts `recipe exec RUN_DIR` where the job runs, which runs
    the in-image checks and the script, then finishes this same run.json. If the job ended before it
    could (the image did not start, the container was killed), the record is finished here."""
    reasons: list[str] = []
    rc, interrupted = backend(launch.backend).run(launch, on_interrupt=reasons.append)
    record.data = read_record(launch.run_dir) or record.data
    if status_of(record.data) not in (None, RunStatus.RUNNING):   # exec finished it
        return EXIT_INTERRUPTED if interrupted else rc
    if interrupted:
        record.finish(RunStatus.INTERRUPTED, EXIT_INTERRUPTED, interrupted_by=reasons[0] if reasons else "signal")
        return EXIT_INTERRUPTED
    code = rc or EXIT_FAIL  # exit 3: the recipe image could not be had (docker.run says why)
    record.finish(RunStatus.PREFLIGHT_FAILED if code == EXIT_PREFLIGHT else RunStatus.FAILED, code,
                  error=f"the {launch.backend} job exited {rc} before its run finished")
    click.echo(f"recipe: the {launch.backend} job exited {rc} before run {launch.run_id} finished; "
               f"log: {launch.run_dir / 'logs' / f'{launch.backend}.log'}", err=True)
    return code


def exec_run(run_dir: Path) -> int:
    """`recipe exec RUN_DIR`, where the job runs (inside the container, on the allocation's head node):
    the launch frozen in plan.json, its in-image checks, then run.sh, its log watched, then the gate,
    all in the one run.json the launching `recipe run` began."""
    from runner.checks import run_checks
    from runner.plan.document import launch_of, read_plan

    run_dir = Path(run_dir).resolve()
    doc = read_plan(run_dir)
    launch = launch_of(doc, run_dir)
    # the checks below vouch for the plan: the script that runs must be that plan's, byte for byte
    script = read_regular(run_dir / "run.sh", root=run_dir, what="run script").decode("utf-8", "replace")
    if script != render_script(launch.plan, lib=f"{doc['bundle_dir']}/recipes/lib/launch.sh"):
        raise RecipeError(f"{run_dir / 'run.sh'}: not the script of this run's plan.json; refusing to run it", 2)
    data = read_record(run_dir)
    status = status_of(data)
    if data is None or status not in (RunStatus.RUNNING, RunStatus.SUBMITTED) or data.get("run_id") != launch.run_id:
        raise RecipeError(f"{run_dir / 'run.json'}: no running or submitted record of run {launch.run_id}; "
                          "`recipe exec` carries on a run that `recipe run --backend docker|slurm` or "
                          "`recipe sbatch --submit` began", 2)
    record = RunRecord(run_dir, data)
    if status == RunStatus.SUBMITTED:   # the Slurm job began: from now this process stands for the run
        record.update(status=RunStatus.RUNNING, started_at=now(), pid=os.getpid(), hostname=socket.gethostname(),
                      slurm_job_id=os.environ.get("SLURM_JOB_ID"))
        data = record.data
    stage = ["preflight"]
    try:
        checks = run_checks(in_image_checks(launch, doc["backend"]), launch.skip)
        click.echo(f"recipe: exec {launch.run_id} in {run_dir}; in-image preflight:", err=True)
        print_checks(checks)
        record.update(preflight=[*data.get("preflight", []), *(c.as_dict() for c in checks)],
                      doctor=next((c.data for c in checks if c.name == "image" and c.data), None),
                      image_build=_running_image(), packages=recorded_versions(launch.recipe, launch.plan))
        if failed(checks):
            names = ", ".join(c.name for c in failed(checks))
            record.finish(RunStatus.PREFLIGHT_FAILED, EXIT_PREFLIGHT, error=f"in-image preflight failed: {names}")
            click.echo(f"recipe: run {launch.run_id} refused inside the job: {names} failed", err=True)
            return EXIT_PREFLIGHT
        stage[0] = "script"
        return _script_then_gate(launch, record, launch.gate, stage)
    except BaseException as e:
        finalize_on_error(record, e, stage[0])
        raise


def in_image_checks(launch: Launch, outer: str) -> dict[str, Callable[[], Check]]:
    """The local backend's checks that the launching side did not run already: for docker, those
    about the image and the job (image, shm, ports, args, model, packages); on Slurm's head node,
    every one. `image` is always asked here: outside it meant the image choice, here the stack."""
    from runner.launch.backends import check_names

    outside = set(check_names(outer)) - {"image"} if outer != "local" else set()
    return {n: c for n, c in backend("local").checks(launch).items() if n not in outside}


def _script_then_gate(launch: Launch, record: RunRecord, gate: bool, stage: list[str]) -> int:
    reasons: list[str] = []
    watched: list = []   # a runner/launch/watch.py Match: the log said the run is lost
    # The script's process group id, so that whoever finds this run stuck can end exactly it.
    rc, interrupted = backend(launch.backend).run(launch, on_start=lambda pid: record.update(script_pgid=pid),
                                                  on_interrupt=reasons.append, on_failure=watched.append)
    if watched:
        record.finish(RunStatus.FAILED, EXIT_FAIL, script_exit_code=rc, error=watched[0].message(),
                      watch_match=watched[0].as_dict())
        click.echo(f"recipe: run {launch.run_id} stopped: {watched[0].message()}", err=True)
        click.echo(f"recipe: log: {launch.run_dir / 'logs' / 'run.log'}", err=True)
        return EXIT_FAIL
    if interrupted:
        record.finish(RunStatus.INTERRUPTED, EXIT_INTERRUPTED, script_exit_code=rc,
                      interrupted_by=reasons[0] if reasons else "signal")
        from runner.launch.progress import steps_done

        total = launch.options.num_rollout
        at = steps_done(launch)
        click.echo(f"recipe: run {launch.run_id} interrupted at step {at}/{total}; record: "
                   f"{launch.run_dir / 'run.json'}", err=True)
        return EXIT_INTERRUPTED
    if rc != 0:
        record.finish(RunStatus.FAILED, EXIT_FAIL, script_exit_code=rc)
        log = launch.run_dir / "logs" / "run.log"
        if not launch.verbose:   # the trainer's last words were not on the console: its traceback is here
            tail = log_tail(log, TAIL_LINES)
            click.echo("\n".join([f"recipe: the last {len(tail)} lines of the log:", *tail]), err=True)
        click.echo(f"recipe: run script exited {rc}; log: {log}", err=True)
        return EXIT_FAIL
    stage[0] = "gate"
    if gate:
        record.update(gate_started_at=now())
    passed = gate_run(launch, record) if gate else None
    if passed is False:
        record.finish(RunStatus.GATE_FAILED, EXIT_FAIL, script_exit_code=0)
        click.echo(f"recipe: run {launch.run_id} finished but FAILED its expected-metrics gate", err=True)
        return EXIT_FAIL
    record.finish(RunStatus.SUCCEEDED, EXIT_OK, script_exit_code=0)
    click.echo(f"recipe: run {launch.run_id} succeeded; record: {launch.run_dir / 'run.json'}", err=True)
    return EXIT_OK


def finalize_on_error(record: RunRecord, e: BaseException, stage: str) -> None:
    """Write the final status for an exception leaving the run: what the process will exit with."""
    if status_of(record.data) != RunStatus.RUNNING:
        return
    # No second signal may cut this write short; the process is on its way out, so they stay blocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    lost = RunStatus.GATE_FAILED if stage == "gate" else RunStatus.FAILED
    if isinstance(e, KeyboardInterrupt):
        status, code, why = RunStatus.INTERRUPTED, EXIT_INTERRUPTED, f"signal during the {stage}"
    elif isinstance(e, BrokenPipeError | StdoutClosed):
        status, code, why = RunStatus.INTERRUPTED, EXIT_INTERRUPTED, "stdout closed"
    elif isinstance(e, RecipeError):
        status, code, why = lost, e.code, e.message
    elif isinstance(e, SystemExit):
        code = e.code if isinstance(e.code, int) else EXIT_FAIL
        status, why = (RunStatus.SUCCEEDED if code == EXIT_OK else lost), f"exit {code}"
    else:
        status, code, why = lost, EXIT_FAIL, f"internal error: {type(e).__name__}: {e}"
    fields = {"interrupted_by": why} if status == RunStatus.INTERRUPTED else {"error": why}
    if stage == "gate" and status != RunStatus.INTERRUPTED:
        fields["gate"] = {"status": "error", "passed": False, "detail": why}
    try:
        record.finish(status, code, **fields)
    except OSError as err:
        click.echo(f"recipe: could not write the final record {record.dir / 'run.json'}: {err.strerror}", err=True)
