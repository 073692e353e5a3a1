"""A resolved launch: the recipe, its cell, the plan, and where this run's files go.

Every backend (local, docker, slurm) receives the same Launch and differs only in how the
container and the Ray cluster are brought up; the argv and job environment are the Plan's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.inputs import layout as inputs_mod
from runner.launch.plan import Plan, render_plan
from runner.recipe import Cell, Recipe
from runner.secrets import present_secret_names


@dataclass
class Launch:
    recipe: Recipe
    cell: Cell
    plan: Plan
    run_id: str
    run_dir: Path
    inputs_dir: Path
    output_dir: Path
    nodes: int
    gpus_per_node: int
    image: str
    backend: str
    secret_names: list[str] = field(default_factory=list)
    forward_args: list[str] = field(default_factory=list)  # `recipe run` options to repeat inside
    skip: set[str] = field(default_factory=set)

    @property
    def env(self) -> dict[str, str]:
        """RECIPE_* variables for the run script (no secrets)."""
        return self.plan.script_env


def current_image(recipe: Recipe) -> str:
    """The image this launch runs in: RECIPE_IMAGE (set by `--image`, and inside the container by the
    docker backend: the recipe image built on the pinned base) or the recipe's own pin."""
    return os.environ.get("RECIPE_IMAGE") or recipe.image


def forward_args(cell: str, nodes: int, gpus_per_node: int, opts: dict) -> list[str]:
    """The options that make an inner `recipe run` resolve to this same launch."""
    out = ["--cell", cell, "--nodes", str(nodes), "--gpus-per-node", str(gpus_per_node)]
    for key in ("seed", "rollout_seed", "num_rollout"):
        if opts.get(key) is not None:
            out += [f"--{key.replace('_', '-')}", str(opts[key])]
    if opts.get("deterministic"):
        out.append("--deterministic")
    return out


def build_launch(recipe: Recipe, *, run_id: str, run_dir: Path, backend: str, cell: str | None = None,
                 nodes: int | None = None, gpus_per_node: int | None = None, inputs_dir: Path | None = None,
                 output_dir: Path | None = None, model_dir: Path | None = None, data_dir: Path | None = None,
                 seed: int | None = None, rollout_seed: int | None = None, num_rollout: int | None = None,
                 deterministic: bool = False, extra_env: dict[str, str] | None = None,
                 skip: set[str] | None = None) -> Launch:
    c = recipe.cell(cell)
    inputs_dir = inputs_mod.inputs_root(recipe, inputs_dir)
    output_dir = (output_dir or run_dir / "output").resolve()
    env = dict(extra_env or {})
    plan = render_plan(recipe, c.name, nodes=nodes, gpus_per_node=gpus_per_node, inputs_dir=inputs_dir,
                       model_dir=model_dir, data_dir=data_dir, output_dir=output_dir, run_dir=run_dir,
                       run_id=run_id, seed=seed, rollout_seed=rollout_seed, num_rollout=num_rollout,
                       deterministic=deterministic, extra_env=env)
    opts = {"seed": seed, "rollout_seed": rollout_seed, "num_rollout": num_rollout, "deterministic": deterministic}
    return Launch(recipe=recipe, cell=c, plan=plan, run_id=run_id, run_dir=run_dir, inputs_dir=inputs_dir,
                  output_dir=output_dir, nodes=plan.nodes, gpus_per_node=plan.gpus_per_node,
                  image=current_image(recipe), backend=backend, secret_names=present_secret_names(),
                  forward_args=forward_args(c.name, plan.nodes, plan.gpus_per_node, opts), skip=set(skip or ()))
