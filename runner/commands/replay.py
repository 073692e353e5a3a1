"""`recipe replay RUN_DIR`: re-execute a recorded run and compare its metrics."""

from __future__ import annotations

from pathlib import Path

import click

from runner.commands.run import launch_env
from runner.errors import EXIT_PREFLIGHT, EXIT_REFUSED, RecipeError
from runner.launch import run as runflow
from runner.launch.backends import module
from runner.records import replay
from runner.records.record import create_run_dir, load_record, new_run_id, runs_root


@click.command("replay")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--runs-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the replay's run directory goes (default: beside the original).")
@click.option("--allow-changed-recipe", is_flag=True, help="Replay even if the recipe's files changed.")
@click.option("--allow-changed-image", is_flag=True, help="Replay even if the pinned image changed.")
def replay_cmd(run_dir: Path, runs_dir: Path | None, allow_changed_recipe: bool, allow_changed_image: bool) -> None:
    """Re-execute exactly what RUN_DIR/run.json records, into a new run directory, and compare.

    \b
    Same argv, environment, seeds and cell; inputs re-verified; refused (exit 6) if the recipe's
    files or image changed. Metrics are compared bit for bit for recipes of the "bitwise"
    determinism tier, otherwise within the recipe's bands. Exit 0 when they agree, 1 when not.
    """
    run_dir = run_dir.resolve()
    rec, recipe = replay.load(run_dir)
    reasons = replay.check_unchanged(rec, recipe, allow_changed_recipe, allow_changed_image)
    if reasons:
        raise RecipeError(f"refusing to replay {run_dir.name}: {'; '.join(reasons)}", EXIT_REFUSED)
    replay.restore_environment(rec)
    run_id = new_run_id(recipe.name, rec["cell"])
    target = (runs_root(runs_dir) if runs_dir else run_dir.parent) / run_id
    launch = replay.relaunch(rec, recipe, run_id, target, launch_env(run_id))
    diffs = replay.launch_differences(rec, launch)
    if diffs:
        raise RecipeError(f"refusing to replay {run_dir.name}: the recipe now renders a different launch: "
                          f"{'; '.join(diffs[:3])}", EXIT_REFUSED)
    checks = module("local").preflight(launch)
    if runflow.pf.failed(checks):
        runflow.report_cannot_run(launch, checks)
        raise SystemExit(EXIT_PREFLIGHT)
    create_run_dir(target.parent, run_id)
    click.echo(f"replay: {run_dir.name} -> {run_id}", err=True)
    rc = runflow.run_launch(launch, checks, replay_of={"run_id": rec["run_id"], "run_dir": str(run_dir)})
    comparison = None
    if load_record(target).get("status") in ("succeeded", "gate-failed"):
        comparison = replay.compare(run_dir, target, recipe, rec.get("determinism", "statistical"))
        replay.print_comparison(comparison, str(run_dir), target)
        replay.write_replay_json(target, str(run_dir), comparison, rc)
    raise SystemExit(replay.outcome(rc, comparison))
