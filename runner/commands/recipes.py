"""`recipe list` and `recipe show`."""

from __future__ import annotations

import json

import click

from runner.recipe import list_recipes, load_recipe


@click.command("list")
def list_cmd() -> None:
    """List the recipes in this bundle, one name per line."""
    for name in list_recipes():
        click.echo(name)


@click.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show_cmd(name: str, fmt: str) -> None:
    """Show recipe NAME: pins, hardware, parallelism cells and files."""
    r = load_recipe(name)
    root = r.dir.parent.parent
    files = {k: str((r.dir / v).relative_to(root)) for k, v in r.files.items()}
    doc = {
        "name": r.name,
        "title": r.title,
        "framework": r.data.get("framework"),
        "pins": r.pins,
        "hardware": r.hardware,
        "run": r.run_defaults,
        "determinism": r.data.get("determinism", {}),
        "default_cell": r.default_cell,
        "cells": {n: c.as_dict() for n, c in r.cells.items()},
        "files": files,
    }
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{r.name}: {r.title}")
    click.echo(f"  image      {r.image}")
    for k, v in r.pins["commits"].items():
        click.echo(f"  {k:<24} {v}")
    m, d = r.pins["model"], r.pins["data"]
    click.echo(f"  model      {m.get('repo')} @ {m.get('revision')}")
    click.echo(f"  data       {d.get('repo')} @ {d.get('revision')} ({d.get('file')})")
    hw = r.hardware
    click.echo(f"  hardware   {hw.get('nodes')} node(s) x {hw.get('gpus_per_node')} {hw.get('gpu', 'CPU')}")
    click.echo(f"  determinism {doc['determinism'].get('tier', 'unspecified')}")
    click.echo("  cells:")
    for n, c in r.cells.items():
        mark = "*" if n == r.default_cell else " "
        sp = " +SP" if c.sp else ""
        click.echo(f"   {mark} {n:<16} TP{c.tp} PP{c.pp} CP{c.cp} EP{c.ep} ETP{c.etp}{sp}  "
                   f"max_tokens_per_gpu={c.max_tokens_per_gpu}  {c.description}")
    click.echo("  files:")
    for k, v in files.items():
        click.echo(f"    {k:<18} {v}")
