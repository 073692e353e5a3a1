"""`recipe plan`: the fully resolved launch, with no side effects."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from runner.launch.plan import Plan, argv_lines, render_plan
from runner.recipe import load_recipe

PathOpt = click.Path(path_type=Path, file_okay=False)


def plan_options(f):
    """Options shared by `plan` and `run`: they resolve to the same launch."""
    for opt in reversed([
        click.option("--cell", help="Parallelism cell (default: the recipe's default cell)."),
        click.option("--nodes", type=int, help="Number of nodes (default: the recipe's)."),
        click.option("--gpus-per-node", type=int, help="GPUs per node (default: the recipe's)."),
        click.option("--inputs", "inputs_dir", type=PathOpt,
                     help="Inputs root holding model/ and data/ (default: $RECIPE_INPUTS_DIR or ./inputs/NAME)."),
        click.option("--model-dir", type=PathOpt, help="Override the model directory (default: INPUTS/model)."),
        click.option("--data-dir", type=PathOpt, help="Override the data directory (default: INPUTS/data)."),
        click.option("--output-dir", type=PathOpt, help="Checkpoints go here (default: RUN_DIR/output)."),
        click.option("--seed", type=int, help="--seed for the trainer (default: the recipe's)."),
        click.option("--rollout-seed", type=int, help="--rollout-seed (default: the recipe's)."),
        click.option("--num-rollout", type=int, help="Number of rollouts (default: the recipe's)."),
        click.option("--deterministic", is_flag=True,
                     help="Opt in to deterministic training and inference (slower)."),
    ]):
        f = opt(f)
    return f


def _print_text(p: Plan) -> None:
    lay = p.layout
    sp = " +SP" if lay["sp"] else ""
    click.echo(f"# recipe {p.recipe}, cell {p.cell}: TP{lay['tp']} PP{lay['pp']} CP{lay['cp']} EP{lay['ep']} "
               f"ETP{lay['etp']}{sp}, max_tokens_per_gpu {lay['max_tokens_per_gpu']}, "
               f"{p.nodes} node(s) x {p.gpus_per_node} GPU(s)")
    click.echo("\n# run script environment")
    for k, v in p.script_env.items():
        click.echo(f"{k}={v}")
    click.echo("\n# job environment (secrets by name only)")
    for k, v in p.env.items():
        click.echo(f"{k}={v}")
    click.echo(f"\n# entry point\n{' '.join(p.entrypoint)}")
    click.echo("\n# trainer arguments")
    for line in argv_lines(p.argv):
        click.echo(line)
    click.echo("\n# commands, in order")
    for i, c in enumerate(p.commands, 1):
        click.echo(f"{i:>2}. {shlex.join(c)}")


@click.command("plan")
@click.argument("name")
@plan_options
@click.option("--run-dir", type=PathOpt, help="Run directory to show in the plan (default: ./runs/NAME-plan).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--backend", type=click.Choice(["local", "docker", "slurm"]), default="local", show_default=True,
              help="Also show what this backend runs around the run script (docker run / the sbatch script).")
@click.option("--gpus", type=int, help="Instead of the launch: the layouts legal on N GPUs in all (over --nodes), "
              "each with a per-GPU memory estimate.")
def plan_cmd(name: str, fmt: str, run_dir: Path | None, gpus: int | None, backend: str, **kw) -> None:
    """Print the fully resolved launch of recipe NAME, with no side effects.

    Shows the trainer's argv, the job environment and every command the run script would
    execute, exactly as `recipe run` would. The plan comes from the run script's own dry run
    (RECIPE_DRY_RUN=1), so the two cannot disagree.
    """
    recipe = load_recipe(name)
    if gpus is not None:
        from runner.model.memory import format_table, plan_layouts

        result = plan_layouts(recipe, gpus, kw["nodes"])
        click.echo(json.dumps(result.as_dict(), indent=2) if fmt == "json" else format_table(result))
        return
    if backend != "local":
        _print_backend(recipe, backend, fmt, run_dir, kw)
        return
    p = render_plan(recipe, kw.pop("cell"), run_dir=run_dir, **kw)
    if fmt == "json":
        click.echo(json.dumps(p.as_dict(), indent=2))
    else:
        _print_text(p)


def _print_backend(recipe, backend: str, fmt: str, run_dir: Path | None, kw: dict) -> None:
    """What the docker or slurm backend would execute around the same run script."""
    from runner.launch.backends import module
    from runner.launch.resolve import build_launch

    run_id = run_dir.name if run_dir else f"{recipe.name}-plan"
    target = (run_dir or Path.cwd() / "runs" / run_id).resolve()
    launch = build_launch(recipe, run_id=run_id, run_dir=target, backend=backend, cell=kw.pop("cell"), **kw)
    doc = {**launch.plan.as_dict(), "backend": backend}
    if backend == "docker":  # the recipe image's build where needed, then docker run
        doc["backend_commands"] = module("docker").commands(launch)
        doc["backend_command"] = doc["backend_commands"][-1]
        text = "\n".join(shlex.join(c) for c in doc["backend_commands"])
    else:
        from runner.launch.backends.slurm import job_from_launch
        from runner.launch.sbatch import render

        text = doc["sbatch_script"] = render(job_from_launch(launch))
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_text(launch.plan)
        click.echo(f"\n# {backend} backend: what runs the above\n{text}")
