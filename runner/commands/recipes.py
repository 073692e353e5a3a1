"""`recipe list` and `recipe show`."""

from __future__ import annotations

import json

import click

from runner import console
from runner.commands.output import json_option
from runner.frameworks import framework_of
from runner.recipe import load_recipe


@click.command("list")
@json_option("Print one object per recipe (name, title, hardware, determinism, verified) as JSON.",
             format_alias=True)
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (the README's recipe table).")
def list_cmd(as_json: bool, markdown: bool = False) -> None:
    """List the recipes in this bundle: name, hardware, determinism tier, when and where a run of it was
    last verified (its blessed reference), and title."""
    from runner.console import safe
    from runner.records import verified

    rows = verified.recipe_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if markdown:
        click.echo(verified.markdown(rows), nl=False)
        return
    cols = [[safe(r[k]) for k in ("name", "hardware", "determinism", "status")] for r in rows]
    widths = [max(len(c[i]) for c in cols) for i in range(3)]
    for r, c in zip(rows, cols, strict=True):
        click.echo("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=False)) + "  " + c[3])
        click.echo(f"    {safe(r['title'])}")


@click.command("show")
@click.argument("name", required=False)
@json_option("Print the recipe as JSON (without NAME: the list, as `recipe list --json`).", format_alias=True)
@click.pass_context
def show_cmd(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Show recipe NAME: pins, hardware, parallelism cells and files. Without NAME: the recipes to choose from."""
    if name is None:
        ctx.invoke(list_cmd, as_json=as_json)
        return
    r = load_recipe(name)
    framework_of(r)  # its [<framework>] table is the adapter's schema
    root = r.dir.parent.parent
    files = {k: str((r.dir / v).relative_to(root)) for k, v in r.files.items()}
    doc = {
        "name": r.name,
        "title": r.title,
        "framework": r.framework,
        "pins": r.pins,
        "hardware": r.hardware.model_dump(),
        "run": r.run_defaults.model_dump(),
        "determinism": r.determinism.model_dump(mode="json"),
        "default_cell": r.default_cell,
        "cells": {n: c.as_dict() for n, c in r.cells.items()},
        "files": files,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    m, d, hw = r.model, r.dataset, r.hardware
    about = [("image", r.image), *r.pins["commits"].items(), ("model", f"{m.repo} @ {m.revision}"),
             ("data", f"{d.repo} @ {d.revision} ({d.file})"),
             ("hardware", f"{hw.nodes} node(s) x {hw.gpus_per_node} {hw.gpu or 'CPU'}"),
             ("determinism", r.determinism.tier)]
    cells = [(("* " if n == r.default_cell else "  ") + n, c.layout.label(),
              f"max_tokens_per_gpu={c.max_tokens_per_gpu}", c.description) for n, c in r.cells.items()]
    click.echo(f"{r.name}: {r.title}")
    click.echo(console.table(("about", "value"), about, no_wrap=("about",), show_header=False, gap=2))
    click.echo("cells (* the default):")
    click.echo(console.table(("cell", "layout", "tokens", "description"), cells, no_wrap=("cell", "tokens"),
                             show_header=False, gap=2))
    click.echo("files:")
    click.echo(console.table(("file", "path"), files.items(), no_wrap=("file",), show_header=False, gap=2))
