"""`recipe run`: preflight, then launch a recipe and record the run."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from runner.commands.plan import PathOpt, plan_options
from runner.errors import EXIT_OK
from runner.launch import run as runflow
from runner.launch.backends import module, resolve
from runner.launch.ports import ray_ports
from runner.launch.resolve import build_launch
from runner.recipe import load_recipe
from runner.records.record import claim_run_dir, create_run_dir, new_run_id, runs_root

PREFLIGHT_CHECKS = ("lint", "gpus", "driver", "image", "shm", "disk", "ports", "inputs", "args", "packages",
                    "docker", "slurm", "pyxis", "enroot")


def launch_env(run_id: str) -> dict[str, str]:
    """Per-run Ray ports and temp dir, unless joining a cluster someone else started (RECIPE_RAY_ADDRESS)."""
    if os.environ.get("RECIPE_RAY_ADDRESS"):
        return {"RECIPE_RAY_ADDRESS": os.environ["RECIPE_RAY_ADDRESS"]}
    # Short temp dir: Ray's unix socket paths below it must stay under ~107 bytes.
    return {**ray_ports(), "RECIPE_RAY_TEMP_DIR": f"/tmp/recipe-ray-{run_id[-6:]}"}


@click.command("run")
@click.argument("name")
@plan_options
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", "local", "docker", "slurm"]),
              help="auto: inside the image -> local; in a Slurm allocation -> slurm; docker available -> docker.")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--run-dir", type=PathOpt, help="Use exactly this (new or empty) run directory.")
@click.option("--skip-preflight", "skip", multiple=True, type=click.Choice(PREFLIGHT_CHECKS),
              help="Skip one preflight check (repeatable); the run record says which were skipped.")
@click.option("--image", help="Run in this image (NAME@sha256:...), e.g. the recipe image docker/image.sh built on "
              "the pinned base; recorded in run.json. Default: $RECIPE_IMAGE, else the recipe's pin.")
@click.option("--dry-run", is_flag=True, help="Preflight and print the commands; start nothing.")
@click.option("--no-gate", is_flag=True, help="Do not evaluate the expected-metrics gate after the run.")
def run_cmd(name: str, backend: str, runs_dir: Path | None, run_dir: Path | None, skip: tuple[str, ...],
            image: str | None, dry_run: bool, no_gate: bool, **kw) -> None:
    """Preflight, then launch recipe NAME and record the run.

    \b
    Each run gets a new directory (runs/<time>-<recipe>-<cell>-<id>/) holding run.json (what
    ran, where, on which inputs and image), logs/, events/, metrics.jsonl and gate.json.
    On a machine that cannot run the recipe, prints what is missing and the commands it would
    have run, and exits 3.
    """
    recipe = load_recipe(name)
    if image:
        os.environ["RECIPE_IMAGE"] = image
    backend = resolve(backend, recipe)
    cell = kw.pop("cell")
    run_id = run_dir.name if run_dir else new_run_id(recipe.name, cell or recipe.default_cell)
    target = runflow.run_dir_for(run_dir, runs_root(runs_dir), run_id)
    launch = build_launch(recipe, run_id=run_id, run_dir=target, backend=backend, cell=cell,
                          extra_env=launch_env(run_id), skip=set(skip), **kw)
    checks = module(backend).preflight(launch)

    if dry_run:
        click.echo(f"recipe: dry run of {name} (cell {launch.cell.name}, backend {backend}); preflight:", err=True)
        runflow.print_checks(checks)
        for cmd in runflow.would_run(launch):
            click.echo(shlex.join(cmd))
        raise SystemExit(EXIT_OK)
    if runflow.pf.failed(checks):
        raise SystemExit(runflow.report_cannot_run(launch, checks))

    # The wrapper of a docker/slurm run and the local run it starts inside claim separately.
    role = "run" if backend == "local" else "launcher"
    if run_dir:
        claim_run_dir(target, role)
    else:
        create_run_dir(target.parent, run_id, role)
    raise SystemExit(runflow.run_launch(launch, checks, gate=not no_gate))
