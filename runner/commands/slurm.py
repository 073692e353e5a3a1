"""`recipe sbatch` (render or submit the Slurm script) and `recipe image sqsh` (stage the image)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from runner.atomicfile import fsync_dir
from runner.errors import EXIT_FAIL, EXIT_PREFLIGHT, RecipeError, UsageError
from runner.frameworks import framework_of
from runner.image import enroot
from runner.launch.backends.slurm import job_from_options, submit_script
from runner.launch.sbatch import render
from runner.plan.options import PathOpt, RunOptions, pop_cli, run_options
from runner.recipe import load_recipe


@click.command("sbatch")
@click.argument("name")
@run_options
@click.option("--partition", help="#SBATCH --partition.")
@click.option("--account", help="#SBATCH --account.")
@click.option("--time", "time_", metavar="T", help="#SBATCH --time (e.g. 04:00:00).")
@click.option("--container-runtime", "runtime", type=click.Choice(["pyxis", "none"]), default="pyxis",
              show_default=True, help="pyxis: every step in the pinned image (--image); none: software installed "
              "on nodes.")
@click.option("--sqsh-dir", type=PathOpt,
              help="Use the .sqsh staged here by `recipe image sqsh` instead of pulling by digest.")
@click.option("--bundle-dir", help="Where the steps find this bundle (default: this checkout, mounted read-only "
              "at the same path; with the recipe-bundle image as --image: /opt/recipe-bundle).")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--ready-timeout", type=int, default=600, show_default=True,
              help="Seconds to wait for every node to join Ray before failing.")
@click.option("--submit", is_flag=True, help="Submit with sbatch instead of printing the script.")
@click.argument("run_options_", nargs=-1, type=click.UNPROCESSED, metavar="[-- RUN_OPTIONS...]")
def sbatch_cmd(name: str, partition: str | None, account: str | None, time_: str | None, runtime: str,
               sqsh_dir: Path | None, bundle_dir: str | None, runs_dir: Path | None, ready_timeout: int,
               submit: bool, run_options_: tuple[str, ...], **kw) -> None:
    """Print (or --submit) an sbatch script that runs recipe NAME across a Slurm allocation.

    \b
    The script starts one Ray node per allocated node (head on the first), waits until all
    nodes and GPUs have joined, then runs `recipe run NAME --backend local` on the head node.
    It fails fast naming the node if any node's step dies, and stops everything on exit or
    scancel. Secrets are never written into it: export them before sbatch. Options after `--`
    go to that `recipe run` (e.g. `-- --skip-preflight inputs`).
    """

    recipe = load_recipe(name)
    framework_of(recipe)  # its [<framework>] table is the adapter's schema: checked before anything
    opts = RunOptions.resolve(recipe, pop_cli(kw))
    _check_run_options(name, recipe, run_options_)
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("recipe") else ["sbatch", name, "..."]
    job = job_from_options(
        opts, runs_dir=runs_dir, partition=partition, account=account, time=time_, runtime=runtime,
        sqsh_dir=sqsh_dir, bundle_dir=bundle_dir, ready_timeout=ready_timeout, extra_run_args=list(run_options_),
        command_line="recipe " + shlex.join(argv))
    script = render(job)
    if not submit:
        click.echo(script, nl=False)
        return
    path, job_id = submit_script(job, script)
    click.echo(f"recipe: submitted {path} as job {job_id}; output: {job.runs_dir}/recipe-{name}-{job_id}.out",
               err=True)
    click.echo(job_id)


def _check_run_options(name: str, recipe, run_options_: tuple[str, ...]) -> None:
    """The options after `--` go to `recipe run` on the cluster: parse them with its own parser (and
    its bounds) now, so that a mistake is a one-line usage error here, not a failed job after the
    queue wait."""
    from runner.commands.run import run_cmd

    try:
        ctx = run_cmd.make_context("recipe run", [name, *run_options_])
    except click.ClickException as e:
        raise UsageError(f"options after -- (for `recipe run` on the cluster): {e.format_message()}") from None
    RunOptions.resolve(recipe, pop_cli(dict(ctx.params)))


@click.group("image")
def image_cmd() -> None:
    """Stage the recipe's pinned image for clusters (enroot/pyxis)."""


@image_cmd.command("sqsh")
@click.argument("name")
@click.option("--output-dir", type=PathOpt, default=Path("."), show_default=True,
              help="Directory for the .sqsh (named by the image digest).")
@click.option("--image", help="Image reference (default: the recipe's pinned image).")
@click.option("--enroot", "enroot_bin", default="enroot", show_default=True, help="enroot executable.")
@click.option("--dry-run", is_flag=True, help="Check enroot and print the import command; import nothing.")
def sqsh_cmd(name: str, output_dir: Path, image: str | None, enroot_bin: str, dry_run: bool) -> None:
    """Import recipe NAME's pinned image into DIR/<repo>+sha256-<digest>.sqsh with `enroot import`.

    Refuses enroot older than 4.0 for digest references (they cannot import by digest) and says
    how to stage the image instead. Registry credentials are read by enroot from
    $ENROOT_CONFIG_PATH/.credentials, never passed on the command line.
    """

    ref = image or load_recipe(name).image
    final = output_dir.resolve() / enroot.sqsh_name(ref)
    if final.exists():
        click.echo(f"recipe: {final} already exists (keyed by digest); nothing to do", err=True)
        click.echo(str(final))
        return
    version = enroot.enroot_version(enroot_bin)
    if version < enroot.MIN_DIGEST_VERSION:
        raise RecipeError(enroot.digest_too_old_message(version, ref, final), EXIT_PREFLIGHT)
    # enroot writes the file itself: import under a temporary name, rename only when complete.
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    cmd = enroot.import_command(ref, tmp, enroot_bin)
    if dry_run:
        click.echo(shlex.join(cmd))
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"recipe: {shlex.join(cmd)}", err=True)
    try:
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0 or not tmp.is_file():
            raise RecipeError(f"enroot import exited {rc}" + ("" if tmp.is_file() else f"; no file at {tmp}"),
                              EXIT_FAIL)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(str(final))

