"""`recipe replay RUN_DIR`: re-execute a recorded run and compare its metrics."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from runner.errors import EXIT_REFUSED, RecipeError
from runner.frameworks.packages import recorded_versions
from runner.launch import backends, replay
from runner.launch import run as runflow
from runner.records.record import RunStatus, load_record, status_of


@click.command("replay")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the replay's run directory goes (default: beside the original).")
@click.option("--allow-changed-recipe", is_flag=True, help="Replay even if the recipe's files changed.")
@click.option("--allow-changed-image", is_flag=True, help="Replay even if the pinned image changed.")
@click.option("--allow-changed-packages", is_flag=True,
              help="Replay a bitwise run even if the job's package versions differ from the record.")
@click.option("--skip-preflight", "skip", multiple=True, type=click.Choice(backends.skippable()),
              help="Skip one preflight check (repeatable). Only this flag skips a check: a record's "
              "preflight_skipped is never taken over.")
def replay_cmd(run_dir: Path, runs_dir: Path | None, allow_changed_recipe: bool, allow_changed_image: bool,
               allow_changed_packages: bool, skip: tuple[str, ...]) -> int:
    """Re-execute exactly what RUN_DIR/run.json records, into a new run directory, and compare.

    \b
    The record's typed options (cell, nodes, seeds, rollouts, deterministic, inputs) are rendered
    again by this checkout and must give the recorded launch; of its environment only the
    numeric settings of REPLAYED_ENV (PYTHONHASHSEED, ...) are re-applied; inputs re-verified;
    refused (exit 6) if the recipe's files or image changed. Metrics are compared bit for bit for
    recipes of the "bitwise" determinism tier, otherwise within the recipe's bands. Exit 0 when they agree, 1 when not.
    """
    run_dir = run_dir.resolve()
    rec = replay.load_replayable(run_dir)
    recipe, launch = replay.guarded_relaunch("replay", run_dir, rec, runs_dir or run_dir.parent, set(skip),
                                             allow_recipe=allow_changed_recipe, allow_image=allow_changed_image)
    run_id, target = launch.run_id, launch.run_dir
    across: list[str] = []

    def before_claim(_checks) -> None:
        # preflight passed (a machine that cannot run it at all said so with its fixes first: exit 3)
        across[:] = replay.package_differences(rec, recorded_versions(recipe, launch.plan))
        if across and rec.get("determinism") == "bitwise" and not allow_changed_packages:
            raise RecipeError(f"refusing to replay {run_dir.name}: the job's packages differ from the record "
                              f"({'; '.join(across)}); a bitwise comparison across versions says nothing about "
                              "the recipe; --allow-changed-packages to replay anyway", EXIT_REFUSED)
        for line in across:
            click.echo(f"replay: comparing across versions: {line}", err=True)
        click.echo(f"replay: {run_dir.name} -> {run_id}; it will run the launch this checkout renders "
                   f"({target / 'run.sh'}), which runs:", err=True)
        for cmd in runflow.would_run(launch):
            click.echo(f"  {shlex.join(cmd)}", err=True)

    rc = runflow.carry_out(launch, before_claim=before_claim,
                           replay_of={"run_id": rec["run_id"], "run_dir": str(run_dir)})
    if not (target / "run.json").is_file():  # refused before a run began (preflight): nothing to compare
        return rc
    comparison = None
    if status_of(load_record(target)) in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED):
        comparison = replay.compare(run_dir, target, recipe, rec.get("determinism", "statistical"))
        replay.print_comparison(comparison, str(run_dir), target)
        replay.write_replay_json(target, str(run_dir), comparison, rc, across)
        if across:
            click.echo(f"replay: this comparison is across versions ({len(across)} package(s) differ)", err=True)
    return replay.outcome(rc, comparison)
