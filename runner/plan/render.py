"""The resolved launch of a recipe, rendered once, in Python.

The recipe's framework adapter renders the trainer's argv from typed values, in argument blocks
named by purpose, the way upstream's own launchers do (miles 78527b91 renders its recipes' argv
from a typed `_Recipe` row); runner/plan/script.py turns the
Plan into the one bash script that runs it. Every check, lint, the planner, doctor, each backend and
the record read that Plan; nothing executes a script to learn what it would do.

    RunOptions (flags > RECIPE_* > recipe.toml) -> adapter.render -> Job -> Plan -> run.sh

This module sits a layer above the adapters (tools/house.py): it asks the registry for one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.frameworks import framework_of
from runner.model.parallel import Architecture, layout_errors
from runner.paths import bundle_root
from runner.plan.options import RunOptions, clean
from runner.plan.spec import JobView, Launch, Paths, Plan
from runner.recipe import Cell, Recipe
from runner.records.rundirs import plan_run_dir
from runner.secrets import present_secret_names


def check_layout(recipe: Recipe, cell: Cell, nodes: int, gpus_per_node: int) -> None:
    """Raise a UsageError naming the broken rule and the cells that would work."""
    model_args = recipe.model_args()  # for every recipe: a refused line (a NUL byte, CR) stops the plan
    world = nodes * gpus_per_node
    if world == 0:  # CPU recipes: no model parallelism to check
        return
    try:
        arch = Architecture.from_model_args(model_args)
    except ValueError as e:
        raise UsageError(f"{recipe.path('model_args')}: {e}") from None
    errs = layout_errors(arch, cell.layout, world)
    if errs:
        ok = [c.name for c in recipe.cells.values() if not layout_errors(arch, c.layout, world)]
        raise UsageError(f"cell '{cell.name}' ({cell.layout.label()}) is invalid on {nodes}x{gpus_per_node} "
                         f"GPUs: {'; '.join(errs)}; cells valid there: {', '.join(ok) or 'none'}")


def plan_for(opts: RunOptions, *, run_dir: Path | None = None, run_id: str = "plan",
             extra_env: dict[str, str] | None = None, environ: Mapping[str, str] | None = None,
             inherit_env: bool = True, bundle: Path | None = None) -> Plan:
    """The resolved launch of these options, rendered by the recipe's framework adapter.

    environ: the caller's environment (default os.environ): MASTER_ADDR, the forwarded NCCL/Gloo
    variables and the adapter's own settings (RECIPE_MILES_DIR, ...). inherit_env=False for a launch
    whose job runs in another environment (a container): the caller's PYTHONPATH is not the job's.
    """
    environ = os.environ if environ is None else environ
    check_layout(opts.recipe, opts.cell, opts.nodes, opts.gpus_per_node)
    run_dir = (run_dir or plan_run_dir(opts.recipe.name, run_id)).resolve()
    env = opts.script_env(run_dir, run_id)
    env.update(extra_env or {})
    if environ.get("RECIPE_RAY_ADDRESS"):
        env["RECIPE_RAY_ADDRESS"] = clean("RECIPE_RAY_ADDRESS", environ["RECIPE_RAY_ADDRESS"])
    here = bundle_root()
    root = bundle or here
    recipe_dir = root / opts.recipe.dir.resolve().relative_to(here) if bundle else opts.recipe.dir
    paths = Paths(run_id=run_id, run_dir=str(run_dir), output_dir=env["RECIPE_OUTPUT_DIR"],
                  model_dir=str(opts.model_dir), data_dir=str(opts.data_dir), recipe_dir=str(recipe_dir),
                  bundle=str(root))
    job = framework_of(opts.recipe).render(opts, paths, environ, inherit_env=inherit_env)
    env.update(job.script_env)
    secrets = present_secret_names(dict(environ))
    # Secrets reach the job through the environment Ray inherits; the plan shows them by name only.
    job_env = {**job.job_env, **{name: f"${name}" for name in secrets}}
    return Plan(recipe=opts.recipe.name, cell=opts.cell.name, layout=opts.cell.as_dict(), nodes=opts.nodes,
                gpus_per_node=opts.gpus_per_node, script_env=env, blocks=job.blocks, job_env=job_env,
                entrypoint=job.entrypoint, mkdirs=job.mkdirs, ray_gpus_per_node=job.ray_gpus_per_node,
                ray_total_gpus=job.ray_total_gpus, via_ray=job.via_ray, secret_names=secrets)


def frozen_plan(recipe: Recipe) -> Plan:
    """The default cell as recipe.toml states it, with the run's locations left as placeholders (the
    variables a user sets to run the recipe's run.sh by hand) and no caller environment."""
    from runner.plan.script import placeholder

    def at(name: str) -> Path:
        return Path("/" + placeholder(name))

    opts = RunOptions.resolve(recipe, {"inputs_dir": at("RECIPE_INPUTS_DIR"), "output_dir": at("RECIPE_OUTPUT_DIR")})
    plan = plan_for(opts, run_dir=at("RECIPE_RUN_DIR"), run_id=placeholder("RECIPE_RUN_ID"),
                    environ={"NCCL_NVLS_ENABLE": placeholder("NCCL_NVLS_ENABLE")}, inherit_env=False)

    def unpin(v: str) -> str:
        for name in ("RECIPE_RUN_DIR", "RECIPE_OUTPUT_DIR", "RECIPE_INPUTS_DIR"):
            v = v.replace("/" + placeholder(name), placeholder(name))
        return v.replace(str(recipe.dir), placeholder("RECIPE_DIR"))

    plan.script_env = {k: unpin(v) for k, v in plan.script_env.items()
                       if k not in ("RECIPE_RUN_ID", "RECIPE_RUN_DIR", "RECIPE_OUTPUT_DIR", "RECIPE_INPUTS_DIR")}
    plan.blocks = [(n, [unpin(w) for w in words]) for n, words in plan.blocks]
    plan.job_env = {k: unpin(v) for k, v in plan.job_env.items()}
    plan.entrypoint = [unpin(w) for w in plan.entrypoint]
    plan.mkdirs = [unpin(d) for d in plan.mkdirs]
    return plan


def frozen_script(recipe: Recipe) -> str | None:
    """The recipe's run.sh as it must read: its frozen plan rendered as one script (None for a recipe
    that is only its run script: that script is its own, hand-written)."""
    from runner.plan.script import render_script

    if not framework_of(recipe).renders:
        return None
    return render_script(frozen_plan(recipe), lib="../lib/launch.sh", frozen=True)


def render_plan(recipe: Recipe, cell_name: str | None = None, *, run_dir: Path | None = None, run_id: str = "plan",
                extra_env: dict[str, str] | None = None, **cli: Any) -> Plan:
    """plan_for the options `cli` (flag names as RunOptions.resolve takes them) give with this environment."""
    opts = RunOptions.resolve(recipe, {"cell": cell_name, **cli}, from_env=True)
    return plan_for(opts, run_dir=run_dir, run_id=run_id, extra_env=extra_env)


def build_launch(opts: RunOptions, *, run_id: str, run_dir: Path, backend: str,
                 extra_env: dict[str, str] | None = None, skip: set[str] | None = None,
                 rehash: bool = False, gate: bool = True, verbose: bool = False,
                 view: JobView | None = None) -> Launch:
    """The launch, its plan rendered once with the paths its job will see (`view`: a container's
    mounts; None: this host's, as on a shared file system)."""
    run_dir = Path(run_dir).resolve()
    job_opts, job_dir = (in_view(opts, view), view.run_dir) if view else (opts, run_dir)
    # a container's job does not run in this process's environment: its PYTHONPATH is not the job's
    plan = plan_for(job_opts, run_dir=job_dir, run_id=run_id, extra_env=extra_env, inherit_env=backend == "local",
                    bundle=view.bundle if view else None)
    return Launch(options=opts, plan=plan, run_id=run_id, run_dir=run_dir, backend=backend,
                  secret_names=present_secret_names(), skip=set(skip or ()), rehash=rehash, gate=gate,
                  verbose=verbose, view=view)


def in_view(opts: RunOptions, view: JobView) -> RunOptions:
    """The options with the paths the job sees: the model and data directories keep their place
    under the inputs root, which is mounted whole."""
    def moved(p: Path, flag: str) -> Path:
        if not p.is_relative_to(opts.inputs_dir):
            raise UsageError(f"{flag} {str(p)!r}: the job mounts only --inputs; put the directory under the "
                             "inputs root instead")
        return view.inputs_dir / p.relative_to(opts.inputs_dir)

    return replace(opts, inputs_dir=view.inputs_dir, model_dir=moved(opts.model_dir, "--model-dir"),
                   data_dir=moved(opts.data_dir, "--data-dir"), output_dir=view.output_dir)
