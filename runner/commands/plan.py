"""`recipe plan`: the fully resolved launch, with no side effects."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from runner.commands.output import json_option
from runner.frameworks import framework_of
from runner.launch import backends
from runner.launch.backends import backend as backend_of
from runner.layout import Layout
from runner.plan.options import PathOpt, RunOptions, pop_cli, run_options
from runner.plan.render import build_launch, plan_for
from runner.plan.spec import Plan, argv_lines
from runner.recipe import load_recipe
from runner.records.rundirs import plan_run_dir


def _print_text(p: Plan) -> None:
    lay = p.layout
    label = Layout(**{k: lay[k] for k in ("tp", "pp", "cp", "ep", "etp", "sp")}).label()
    click.echo(f"# recipe {p.recipe}, cell {p.cell}: {label}, max_tokens_per_gpu {lay['max_tokens_per_gpu']}, "
               f"{p.nodes} node(s) x {p.gpus_per_node} GPU(s)")
    click.echo("\n# run script environment")
    for k, v in p.script_env.items():
        click.echo(f"{k}={v}")
    click.echo("\n# job environment (secrets by name only)")
    for k, v in p.job_env.items():
        click.echo(f"{k}={v}")
    click.echo(f"\n# entry point\n{' '.join(p.entrypoint)}")
    for name, words in p.blocks:
        click.echo(f"\n# trainer arguments: {name}")
        for line in argv_lines(words):
            click.echo(line)
    click.echo("\n# what the run script starts (`--script` prints the script)")
    for c in p.commands:
        click.echo(shlex.join(c))


@click.command("plan")
@click.argument("name")
@run_options
@click.option("--run-dir", type=PathOpt, help="Run directory to show in the plan (default: "
              "$RECIPE_RUNS_DIR/NAME-plan, else ./runs/NAME-plan).")
@json_option("Print the plan as JSON.", format_alias=True)
@click.option("--script", "as_script", is_flag=True, help="Print the exact bash script `recipe run` would write into "
              "the run directory and run.")
@click.option("--backend", type=click.Choice(backends.NAMES), default="local", show_default=True,
              help="Also show what this backend runs around the run script (docker run / the sbatch script).")
@click.option("--gpus", type=int, help="Instead of the launch: the layouts legal on N GPUs in all (over --nodes), "
              "each with a per-GPU memory estimate.")
@click.option("--gpu", "gpu_model", type=click.Choice(["H100", "H200"]),
              help="With --gpus: the card to size for (default: the recipe's [hardware] gpu; a recipe "
              "for either, such as \"H100/H200\", is sized for its smallest stated memory).")
def plan_cmd(name: str, as_json: bool, as_script: bool, run_dir: Path | None, gpus: int | None, backend: str,
             gpu_model: str | None, **kw) -> None:
    """Print the fully resolved launch of recipe NAME, with no side effects.

    Shows the trainer's argv in its blocks, the job environment and what the run script starts,
    exactly as `recipe run` renders them: the same Plan object, written into a run directory as
    plan.json and run.sh before anything runs.
    """
    recipe = load_recipe(name)
    framework_of(recipe)  # its [<framework>] table is the adapter's schema: checked before anything
    cli = pop_cli(kw)
    if gpu_model and gpus is None:
        raise click.UsageError("--gpu sizes the layout table: give --gpus N with it")
    if gpus is not None:
        from runner.planner import format_table, plan_layouts

        result = plan_layouts(recipe, gpus, cli["nodes"], gpu=gpu_model)
        click.echo(json.dumps(result.as_dict(), indent=2) if as_json else format_table(result))
        return
    opts = RunOptions.resolve(recipe, cli)
    if backend_of(backend).RUNS_EXEC:
        _print_backend(opts, backend, as_json, run_dir)
        return
    p = plan_for(opts, run_dir=run_dir)
    _print_findings(opts, p)
    if as_script:
        from runner.paths import launch_lib
        from runner.plan.script import render_script

        click.echo(render_script(p, lib=str(launch_lib())), nl=False)
    elif as_json:
        click.echo(json.dumps(p.as_dict(), indent=2))
    else:
        _print_text(p)


def _print_findings(opts: RunOptions, p: Plan) -> None:
    """What `recipe run` of this launch would refuse on (errors) or warn of, in lint's sentences, on
    stderr: the plan on stdout stays the plan."""
    from runner.lint import fix, launch_lint, sentence

    rep = launch_lint(opts, p.argv)
    for f in [*rep.errors, *rep.warnings]:
        click.echo(f"recipe: {f.severity}: {sentence(f)}", err=True)
        if f.severity == "error":
            click.echo(f"recipe:   fix: {fix(opts.recipe.name, f, opts.nodes * opts.gpus_per_node)}", err=True)
    if rep.errors:
        click.echo(f"recipe: `recipe run` of this plan would refuse: {len(rep.errors)} lint error(s)", err=True)


def _print_backend(opts: RunOptions, backend: str, as_json: bool, run_dir: Path | None) -> None:
    """What the docker or slurm backend would execute around the same run script."""

    run_id = run_dir.name if run_dir else f"{opts.recipe.name}-plan"
    target = run_dir or plan_run_dir(opts.recipe.name)
    launch = build_launch(opts, run_id=run_id, run_dir=target, backend=backend,
                          view=backend_of(backend).job_view(run_id))
    doc = {**launch.plan.as_dict(), "backend": backend}
    fields, text = backend_of(backend).describe(launch)  # each backend says what it runs around the script
    doc.update(fields)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_text(launch.plan)
        click.echo(f"\n# {backend} backend: what runs the above\n{text}")
