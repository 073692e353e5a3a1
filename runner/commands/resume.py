"""`recipe resume RUN_DIR`: continue a stopped run from its last complete checkpoint, as a new run."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import click

from runner.console import safe
from runner.errors import EXIT_REFUSED, RecipeError
from runner.frameworks import framework_of
from runner.frameworks.packages import recorded_versions
from runner.launch import backends, replay
from runner.launch import run as runflow
from runner.launch.ports import launch_env
from runner.plan.render import build_launch
from runner.records.record import RunStatus

# what a run that did not finish is recorded as; a finished one (succeeded, gate-failed) has nothing to
# continue, and one refused before it began (preflight-failed) has nothing to continue from
STOPPED = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.STALE)


@click.command("resume")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--skip-preflight", "skip", multiple=True, type=click.Choice(backends.skippable()),
              help="Skip one preflight check (repeatable). A record's preflight_skipped is never taken over.")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "slurm"]),
              help="slurm: inside an allocation, across its nodes (the job `recipe sbatch --time` submits to "
              "continue a run stopped before its wall).")
def resume_cmd(run_dir: Path, skip: tuple[str, ...], backend: str) -> int:
    """Continue RUN_DIR, a stopped run, from its newest complete checkpoint, into a new run directory
    beside it whose run.json links it (resume_of).

    \b
    Guarded as `recipe replay` is: the same recipe files, image, rendered launch (its plan.json) and
    package versions as the run it continues, inputs re-verified by the preflight; otherwise refused
    (exit 6) naming what changed. Incomplete checkpoints newer than the one used are named; with no
    complete checkpoint the resume is refused. Asks nothing: a batch job can call it.
    """
    run_dir = run_dir.resolve()
    rec = replay.load_replayable(run_dir, STOPPED, f"only a stopped run ({', '.join(STOPPED)}) can be resumed")
    recipe, launch = replay.guarded_relaunch("resume", run_dir, rec, run_dir.parent, set(skip))
    framework = framework_of(recipe)
    why = framework.cannot_resume(launch.plan.argv)
    if why:
        raise RecipeError(f"refusing to resume {run_dir.name}: {why}", EXIT_REFUSED)
    plan = replay.recorded_plan(run_dir, rec)
    # The checkpoints are read only where the run kept them, in its own directory: plan.json is data,
    # and what --load reads is loaded by the trainer.
    output = run_dir / "output"
    if Path(plan["output_dir"]) != Path(plan["run_dir"]) / "output" or output.is_symlink():
        raise RecipeError(f"refusing to resume {run_dir.name}: its output dir {safe(plan['output_dir'])} is not "
                          "RUN_DIR/output; only a run that kept its checkpoints there can be resumed", EXIT_REFUSED)
    checkpoint, incomplete = framework.checkpoints(output)
    for p in incomplete:
        click.echo(f"resume: {safe(str(p))}: incomplete checkpoint (no completion marker), not used", err=True)
    if checkpoint is None:
        raise RecipeError(f"refusing to resume {run_dir.name}: no complete checkpoint under {safe(str(output))}",
                          EXIT_REFUSED)
    launch = build_launch(dataclasses.replace(launch.options, resume_from=checkpoint.parent), run_id=launch.run_id,
                          run_dir=launch.run_dir, backend=backend, extra_env=launch_env(launch.run_id),
                          skip=launch.skip)

    def before_claim(_checks) -> None:
        across = replay.package_differences(rec, recorded_versions(recipe, launch.plan))
        if across:
            raise RecipeError(f"refusing to resume {run_dir.name}: the job's packages differ from the record "
                              f"({'; '.join(across)})", EXIT_REFUSED)
        click.echo(f"resume: {run_dir.name} -> {launch.run_id} from {checkpoint}; it runs:", err=True)
        for cmd in runflow.would_run(launch):
            click.echo(f"  {shlex.join(cmd)}", err=True)

    return runflow.carry_out(launch, before_claim=before_claim,
                             resume_of={"run_id": rec["run_id"], "run_dir": str(run_dir),
                                        "checkpoint": str(checkpoint)})
