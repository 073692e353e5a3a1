"""`recipe run`: preflight, then launch a recipe and record the run; `recipe exec`: its job's side."""

from __future__ import annotations

from pathlib import Path

import click

from runner.frameworks import framework_of
from runner.launch import backends
from runner.launch import run as runflow
from runner.launch.ports import launch_env
from runner.plan.options import PathOpt, RunOptions, pop_cli, run_options
from runner.plan.render import build_launch
from runner.recipe import load_recipe
from runner.records.rundirs import new_run_id, run_dir_for


@click.command("run")
@click.argument("name")
@run_options
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", *backends.NAMES]),
              help="auto: inside the image -> local; in a Slurm allocation -> slurm; a docker daemon that answers -> "
              "docker; else local.")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--run-dir", type=PathOpt, help="Use exactly this (new or empty) run directory.")
@click.option("--skip-preflight", "skip", multiple=True, type=click.Choice(backends.skippable()),
              help="Skip one preflight check (repeatable); the run record says which were skipped.")
@click.option("--rehash", is_flag=True, help="Hash every input file again, trusting nothing the verified-inputs "
              "cache recorded (run.json says per file whether it was hashed or trusted).")
@click.option("--dry-run", is_flag=True, help="Preflight and print the commands; start nothing.")
@click.option("--no-gate", is_flag=True, help="Do not evaluate the expected-metrics gate after the run.")
@click.option("--verbose", "-v", is_flag=True, help="Stream the trainer's whole output to the console (it always "
              "goes to logs/run.log); without it the console shows the runner's lines, progress and the verdict.")
def run_cmd(name: str, backend: str, runs_dir: Path | None, run_dir: Path | None, skip: tuple[str, ...],
            rehash: bool, dry_run: bool, no_gate: bool, verbose: bool, **kw) -> int:
    """Preflight, then launch recipe NAME and record the run.

    \b
    Each run gets a new directory (runs/<time>-<recipe>-<cell>-<id>/) holding run.json (what
    ran, where, on which inputs and image), logs/, events/, metrics.jsonl and gate.json.
    On a machine that cannot run the recipe, prints what is missing and the commands it would
    have run, and exits 3.
    """
    recipe = load_recipe(name)
    framework_of(recipe)  # its [<framework>] table is the adapter's schema: checked before anything
    opts = RunOptions.resolve(recipe, pop_cli(kw))
    notes: list[str] = []
    backend = backends.resolve(backend, recipe, notes)
    run_id = run_dir.name if run_dir else new_run_id(recipe.name, opts.cell.name)
    target = run_dir_for(run_dir, runs_dir, run_id)
    launch = build_launch(opts, run_id=run_id, run_dir=target, backend=backend, extra_env=launch_env(run_id),
                          skip=set(skip), rehash=rehash, gate=not no_gate, verbose=verbose,
                          view=backends.backend(backend).job_view(run_id))
    return runflow.carry_out(launch, given_dir=bool(run_dir), dry_run=dry_run, notes=notes)


@click.command("exec")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
def exec_cmd(run_dir: Path) -> int:
    """Carry out the plan frozen in RUN_DIR/plan.json, where the job runs.

    \b
    `recipe run --backend docker|slurm` renders the plan once, writes plan.json, run.sh and
    run.json into the run directory, and starts this inside the container or on the
    allocation's head node: the in-image checks (image, shm, ports, args, model, packages)
    against that same plan, then run.sh, its log watched, then the gate, finishing the same
    run.json. It takes no options: everything is in plan.json.
    """
    return runflow.exec_run(run_dir)
