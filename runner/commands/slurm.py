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
from runner.launch.backends.slurm import job_from_launch, sbatch_exe, submit_continuation, submit_script
from runner.launch.ports import launch_env
from runner.launch.run import freeze
from runner.launch.sbatch import render
from runner.paths import bundle_root
from runner.plan.options import CLI_KEYS, PathOpt, RunOptions, pop_cli, run_options
from runner.plan.render import build_launch
from runner.plan.spec import JobView
from runner.recipe import load_recipe
from runner.records.record import RunStatus, claim_run_dir, create_run_dir
from runner.records.rundirs import new_run_id, run_dir_for


@click.command("sbatch")
@click.argument("name")
@run_options
@click.option("--partition", help="#SBATCH --partition.")
@click.option("--account", help="#SBATCH --account.")
@click.option("--time", "time_", metavar="T", help="#SBATCH --time (e.g. 04:00:00).")
@click.option("--stop-before", type=int, default=300, show_default=True, metavar="SECONDS",
              help="With --time: stop the run this long before the wall (Slurm's --signal), so that it saves "
              "a checkpoint and is recorded interrupted, for `recipe resume`.")
@click.option("--resume-after/--no-resume-after", default=True, show_default=True,
              help="With --time --submit: also submit a job that resumes the run once this one has ended.")
@click.option("--container-runtime", "runtime", type=click.Choice(["pyxis", "none"]), default="pyxis",
              show_default=True, help="pyxis: every step in the pinned image (--image); none: software installed "
              "on nodes.")
@click.option("--sqsh-dir", type=PathOpt,
              help="Use the .sqsh staged here by `recipe image sqsh` instead of pulling by digest.")
@click.option("--bundle-dir", help="Where the steps find this bundle (default: this checkout, mounted read-only "
              "at the same path; with the recipe-bundle image as --image: /opt/recipe-bundle).")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories, on a file system every node mounts "
              "(default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--ready-timeout", type=int, default=600, show_default=True,
              help="Seconds to wait for every node to join Ray before failing.")
@click.option("--submit", is_flag=True, help="Freeze the plan into the run directory and submit with sbatch, "
              "instead of printing the script.")
@click.argument("run_options_", nargs=-1, type=click.UNPROCESSED, metavar="[-- RUN_OPTIONS...]")
def sbatch_cmd(name: str, partition: str | None, account: str | None, time_: str | None, runtime: str,
               sqsh_dir: Path | None, bundle_dir: str | None, runs_dir: Path | None, ready_timeout: int,
               stop_before: int, resume_after: bool, submit: bool, run_options_: tuple[str, ...], **kw) -> None:
    """Print (or --submit) an sbatch script that runs recipe NAME across a Slurm allocation.

    \b
    --submit freezes the launch into a new run directory under --runs-dir (plan.json, run.sh and
    a "submitted" run.json), then submits the script. The job starts one Ray node per allocated
    node (head on the first), waits until all nodes and GPUs have joined, then runs `recipe exec
    RUN_DIR` on the head node, which carries out that plan and finishes the same run.json. It
    fails fast naming the node if any node's step dies, and stops everything on exit or scancel.
    Secrets are never written into it: export them before sbatch. Options after `--` are those
    of `recipe run` (e.g. `-- --skip-preflight inputs`), frozen into the plan.
    """

    recipe = load_recipe(name)
    framework_of(recipe)  # its [<framework>] table is the adapter's schema: checked before anything
    options, flags, run_dir = _run_options(name, run_options_)
    opts = RunOptions.resolve(recipe, {**pop_cli(kw), **options})
    run_id = run_dir.name if run_dir else new_run_id(recipe.name, opts.cell.name)
    target = run_dir_for(run_dir, runs_dir, run_id)
    view = None
    if bundle_dir and Path(bundle_dir) != bundle_root():  # the job's bundle is elsewhere: its run.sh names that
        view = JobView(inputs_dir=opts.inputs_dir, output_dir=opts.output_for(target), run_dir=target,
                       bundle=Path(bundle_dir))
    launch = build_launch(opts, run_id=run_id, run_dir=target, backend="slurm", extra_env=launch_env(run_id),
                          skip=set(flags["skip"]), rehash=flags["rehash"], gate=not flags["no_gate"],
                          verbose=flags["verbose"], view=view)
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("recipe") else ["sbatch", name, "..."]
    job = job_from_launch(launch, runtime, sqsh_dir=sqsh_dir, bundle_dir=bundle_dir, ready_timeout=ready_timeout,
                          command_line="recipe " + shlex.join(argv), partition=partition, account=account,
                          time=time_, stop_before=stop_before)
    script = render(job)
    if not submit:
        click.echo(script, nl=False)
        click.echo(f"recipe: not submitted; --submit freezes the plan into {target} (plan.json, run.sh, run.json) "
                   "and submits this script", err=True)
        return
    sbatch = sbatch_exe()   # before a run directory is made for a job that cannot be submitted
    try:
        if run_dir:
            claim_run_dir(target)
        else:
            create_run_dir(target.parent, run_id)
    except OSError as e:
        raise RecipeError(f"{e.filename or target}: cannot create the run directory ({e.strerror}); give "
                          "--runs-dir on a writable file system every node mounts", EXIT_PREFLIGHT) from None
    # "submitted", not "running": nothing runs until Slurm starts the job, whose `recipe exec` makes it
    # running (its own pid and host); no process of this host stands for it meanwhile.
    record = freeze(launch, [], status=RunStatus.SUBMITTED, pid=None)
    record.save()
    try:
        job_id = submit_script(sbatch, job, script)
    except BaseException as e:
        record.finish(RunStatus.FAILED, EXIT_FAIL, error=f"not submitted: {e}")
        raise
    click.echo(f"recipe: submitted run {run_id} as job {job_id}; run directory: {target}; output: "
               f"{job.runs_dir}/recipe-{name}-{job_id}.out", err=True)
    click.echo(job_id)
    if time_ and resume_after:
        follow = submit_continuation(sbatch, job, job_id)
        click.echo(f"recipe: submitted job {follow}: `recipe resume {target}` if job {job_id} stops before "
                   f"its wall (after one that succeeds Slurm cancels it unrun); output: "
                   f"{job.runs_dir}/recipe-{name}-resume-{follow}.out", err=True)
        click.echo(follow)


# Options of `recipe run` that mean nothing after `recipe sbatch ... --`: sbatch has its own, or none.
NOT_AFTER_DASHES = {"backend": "--backend", "runs_dir": "--runs-dir (give it to recipe sbatch)",
                    "dry_run": "--dry-run (drop --submit to see the script)"}


def _run_options(name: str, run_options_: tuple[str, ...]) -> tuple[dict, dict, Path | None]:
    """The options after `--`, parsed by `recipe run`'s own parser (and its bounds): a mistake is a
    one-line usage error here, not a failed job after the queue wait. Returns the options given on
    that command line (they override sbatch's own), the run's flags (skip, rehash, gate, verbose), and
    its --run-dir."""
    from click.core import ParameterSource

    from runner.commands.run import run_cmd

    try:
        ctx = run_cmd.make_context("recipe run", [name, *run_options_])
    except click.ClickException as e:
        raise UsageError(f"options after -- (for `recipe run` on the cluster): {e.format_message()}") from None
    given = {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    for key, flag in NOT_AFTER_DASHES.items():
        if key in given:
            raise UsageError(f"options after --: {flag} is not an option of the run on the cluster")
    options = {k: v for k, v in given.items() if k in CLI_KEYS}
    flags = {k: ctx.params[k] for k in ("skip", "rehash", "no_gate", "verbose")}
    return options, flags, given.get("run_dir")

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

