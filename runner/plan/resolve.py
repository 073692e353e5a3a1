"""A resolved launch: the options, the plan, and where this run's files go.

Every backend (local, docker, slurm) receives the same Launch and differs only in how the
container and the Ray cluster are brought up; the argv and job environment are the Plan's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.plan.dryrun import Plan, plan_for
from runner.plan.options import RunOptions
from runner.recipe import Cell, Recipe
from runner.secrets import present_secret_names


@dataclass
class Launch:
    options: RunOptions
    plan: Plan
    run_id: str
    run_dir: Path
    backend: str
    secret_names: list[str] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)
    rehash: bool = False  # the inputs check reads every file, trusting nothing the verified-inputs cache says
    gate: bool = True  # evaluate the expected-metrics gate after the run (--no-gate: False)
    # What the backend's preflight found and its commands must then use (docker: the image chosen
    # from its labels), keyed by backend; carried here rather than in module globals.
    found: dict = field(default_factory=dict)

    @property
    def recipe(self) -> Recipe:
        return self.options.recipe

    @property
    def cell(self) -> Cell:
        return self.options.cell

    @property
    def nodes(self) -> int:
        return self.options.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.options.gpus_per_node

    @property
    def inputs_dir(self) -> Path:
        return self.options.inputs_dir

    @property
    def image(self) -> str:
        return self.options.image

    @property
    def output_dir(self) -> Path:
        return self.options.output_for(self.run_dir)

    @property
    def script_env(self) -> dict[str, str]:
        """RECIPE_* variables for the run script (no secrets)."""
        return self.plan.script_env

    @property
    def forward_args(self) -> list[str]:
        """`recipe run` options that make an inner run (docker, Slurm) resolve to this same launch."""
        return self.options.to_argv()


def build_launch(opts: RunOptions, *, run_id: str, run_dir: Path, backend: str,
                 extra_env: dict[str, str] | None = None, skip: set[str] | None = None,
                 rehash: bool = False, gate: bool = True) -> Launch:
    run_dir = Path(run_dir).resolve()
    plan = plan_for(opts, run_dir=run_dir, run_id=run_id, extra_env=extra_env)
    return Launch(options=opts, plan=plan, run_id=run_id, run_dir=run_dir, backend=backend,
                  secret_names=present_secret_names(), skip=set(skip or ()), rehash=rehash, gate=gate)
