"""`recipe diff BASE OTHER` (git's order: OTHER compared with BASE), or `recipe diff RUN`: RUN compared with
the recipe's blessed reference, which is then the base.

In records/diff.py terms the base is side B (the baseline of relative differences and bands) and the
other run is side A.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.console import safe
from runner.errors import EXIT_MISSING, RecipeError, UsageError

RUN_ARG = click.Path(exists=True, file_okay=False, path_type=Path)


def _side(run_dir: Path):
    from runner.gate import metrics
    from runner.records.diff import Side
    from runner.records.record import read_record

    rec = read_record(run_dir)
    notes = [] if rec is not None else [f"{run_dir}: no run.json; only its metrics are compared"]
    series = metrics.collect(run_dir)
    if not series.values:
        raise RecipeError(safe(f"{run_dir}: no metrics found (events/, logs/ or metrics.jsonl)"), EXIT_MISSING)
    return Side(label=str(run_dir), record=rec or {}, series=series, run_dir=str(run_dir.resolve()), notes=notes)


@click.command("diff")
@click.argument("base", type=RUN_ARG, metavar="BASE")
@click.argument("other", type=RUN_ARG, required=False, metavar="[OTHER]")
@click.option("--recipe", "recipe", metavar="NAME",
              help="Recipe whose bands apply and whose reference is the base of `diff RUN` (default: run.json's).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the differences as JSON instead of tables (\"b\" is the base, \"a\" the other run).")
def diff_cmd(base: Path, other: Path | None, recipe: str | None, as_json: bool) -> None:
    """Show what changed from run BASE to run OTHER, as `git diff BASE OTHER` does.

    \b
    recipe diff BASE OTHER   OTHER compared with BASE (BASE is the baseline)
    recipe diff RUN          RUN compared with the recipe's blessed reference (the baseline)
    Provenance: image digest, bundle commit and dirtiness, recipe file hashes, argv flag by flag,
    job environment by name, inputs, host, GPU, driver, seeds, skipped preflight checks.
    Metrics: per metric the largest relative difference to the base and where, and the first
    step at which the other run leaves the base's band for metrics with band or relative rules.
    Exits 0 when the comparison was made, whatever it found; 2 on bad input, 4 if a run has no metrics.
    """
    from runner.commands.gate import load_named_recipe
    from runner.gate.expected import load_expected
    from runner.gate.reference import load_reference, reference_path
    from runner.records.diff import Side, diff, format_text, json_ready

    # A is the run being judged, B its baseline: OTHER against BASE, or RUN against the reference.
    run_a, run_b = (base, None) if other is None else (other, base)
    a = _side(run_a)
    name = recipe or a.record.get("recipe")
    if run_b is None and not name:
        raise UsageError(safe(f"{run_a}: no run.json naming the recipe; give OTHER or --recipe NAME"))
    expected = load_expected(load_named_recipe(name).path("expected_metrics")) if name else None
    if run_b is not None:
        b = _side(run_b)
    else:
        ref = load_reference(expected.path)
        if ref is None:
            raise RecipeError(safe(f"recipe {name} has no blessed reference ({reference_path(expected.path)}); "
                                   "give two runs (BASE OTHER), or `recipe bless RUN_DIR` first"), EXIT_MISSING)
        prov = ref.extra.get("provenance")
        b = Side(label=f"reference of {name} (blessed from {(prov or {}).get('run_dir', '?')})",
                 record=prov if isinstance(prov, dict) else {}, series=ref, run_dir=str(reference_path(expected.path)))
    result = diff(a, b, expected)
    if as_json:
        click.echo(json.dumps(json_ready(result), indent=2))
    else:
        click.echo(format_text(result))
