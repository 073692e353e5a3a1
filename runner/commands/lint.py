"""`recipe lint`: the recipe's silent mistakes, from its files alone."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.errors import EXIT_FAIL, EXIT_OK
from runner.lint import format_report, lint_recipe

FileOpt = click.Path(path_type=Path, dir_okay=False)


@click.command("lint")
@click.argument("name")
@click.option("--args", "args_file", type=FileOpt, help="Model args file to check (default: the recipe's).")
@click.option("--hf-config", type=FileOpt,
              help="config.json to compare against (default: the recipe's hf_config.json, the pinned revision's).")
@click.option("--cell", help="Check only this parallelism cell (default: every cell).")
@click.option("--nodes", type=click.IntRange(1), help="Size the layout checks for this many nodes (default: the "
              "recipe's), as `recipe run --nodes` would run.")
@click.option("--gpus-per-node", type=click.IntRange(0), help="Size the layout checks for this many GPUs per node "
              "(default: the recipe's), as `recipe run --gpus-per-node` would run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lint_cmd(name: str, args_file: Path | None, hf_config: Path | None, cell: str | None, nodes: int | None,
             gpus_per_node: int | None, as_json: bool) -> int:
    """Check recipe NAME for silent mistakes before any GPU time is spent.

    Compares the frozen model args with the model's config.json (routing: top-k, scaling factor,
    router groups, score function, expert bias; shapes), checks the train argv for known miles
    traps (R3, pause mode, reference model, KL) and each cell's layout and memory. Exit 0 when
    there is no error, 1 when there is.
    """
    report = lint_recipe(name, args_file=args_file, hf_config=hf_config, cell=cell, nodes=nodes,
                         gpus_per_node=gpus_per_node)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))
    return EXIT_OK if report.ok else EXIT_FAIL
