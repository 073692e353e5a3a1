"""The trainer's full argv for a recipe cell, as the run script renders it (no side effects).

Lint and the planner read flags beyond the model args (R3, KL, colocate, memory fractions); they
take them from the same dry run `recipe plan` shows, so they judge what would be launched.
"""

from __future__ import annotations

from runner.recipe import Recipe


def train_argv(recipe: Recipe, cell: str | None, nodes: int | None = None,
               gpus_per_node: int | None = None) -> list[str]:
    from runner.launch.plan import render_plan

    return render_plan(recipe, cell, nodes=nodes, gpus_per_node=gpus_per_node).argv
