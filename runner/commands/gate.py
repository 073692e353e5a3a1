"""`recipe check`, `recipe bless`, `recipe report`: the expected-metrics gate from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.errors import EXIT_FAIL, EXIT_MISSING, EXIT_OK, EXIT_REFUSED, RecipeError, UsageError
from runner.gate import evaluate as gate
from runner.gate import metrics, reference
from runner.gate.report import require_matplotlib, write_report
from runner.recipe import load_recipe
from runner.records.record import read_record

PATH_ARG = click.Path(exists=True, path_type=Path)


def _resolve_expected(path: Path, recipe: str | None, expected: Path | None) -> tuple[Path, dict | None]:
    """The expected-metrics file for PATH: --expected, else --recipe, else run.json's "recipe"."""
    run = read_record(path) if path.is_dir() else None
    if expected is not None:
        return expected, run
    name = recipe or (run or {}).get("recipe")
    if not name:
        raise UsageError(f"{path}: no run.json naming the recipe; give --recipe NAME or --expected FILE")
    r = load_recipe(name)
    return r.path("expected_metrics"), run


def _collect(path: Path):

    series = metrics.collect(path)
    if not series.values:
        raise RecipeError(f"{path}: no metrics found (looked for miles event files in events/ or *.jsonl, "
                          "stdout logs in logs/*.log or *.log, and metrics.jsonl)", EXIT_MISSING)
    return series


@click.command("check")
@click.argument("path", type=PATH_ARG)
@click.option("--recipe", "recipe", metavar="NAME", help="Recipe whose expected metrics apply (default: run.json's).")
@click.option("--expected", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An expected-metrics TOML file instead of the recipe's.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON instead of a table.")
def check_cmd(path: Path, recipe: str | None, expected: Path | None, as_json: bool) -> int:
    """Check a run's metrics against its recipe's expected metrics.

    PATH is a run directory (run.json, events/, logs/), a directory of miles event files, or one
    event/log/metrics.jsonl file. Prints rule, observed, bound, verdict and why; exits 1 if any
    rule fails. For a run directory, also writes metrics.jsonl and gate.json into it.
    """
    expected_path, run = _resolve_expected(path, recipe, expected)
    exp = gate.load_expected(expected_path)
    series = _collect(path)
    result = gate.evaluate(exp, series)
    if run is not None:
        try:
            metrics.write_metrics_jsonl(series, path / metrics.METRICS_FILE)
            gate.write_gate_json(result, path / "gate.json")
        except OSError as e:  # a read-only copy of a run can still be checked
            click.echo(f"warning: {path}: cannot write metrics.jsonl/gate.json ({e.strerror})", err=True)
    if as_json:
        click.echo(json.dumps(gate.json_safe(result.as_dict()), indent=2))
    else:
        click.echo(gate.format_table(result))
        if series.conflicts:
            click.echo(f"note: {len(series.conflicts)} value(s) logged differently by two processes; "
                       "kept per the rank rule (see metrics.jsonl header)", err=True)
        if series.unplaced:
            click.echo(f"note: {series.unplaced} value(s) had no step key in their event and were not placed",
                       err=True)
        for line in series.skipped_lines[:5]:
            click.echo(f"note: skipped {line}", err=True)
    return EXIT_OK if result.passed else EXIT_FAIL


@click.command("bless")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--recipe", "recipe", metavar="NAME", help="Recipe to bless into (default: run.json's).")
@click.option("--replace", is_flag=True,
              help="Re-baseline: judge the run without the current reference's bands, then replace it.")
@click.option("--allow-skipped-preflight", is_flag=True,
              help="Bless a run that skipped preflight checks; the reference records that it did.")
def bless_cmd(run_dir: Path, recipe: str | None, replace: bool, allow_skipped_preflight: bool) -> None:
    """Make a trusted run the recipe's reference series (reference_metrics.jsonl).

    \b
    Only a run recorded by `recipe run` that succeeded, whose recipe files are those of the recipe
    now, that ran every preflight check (or --allow-skipped-preflight) and that passes its gate,
    bands included (unless --replace). Refusals exit 6; a malformed run.json exits 2. Later runs
    are then held to the band and relative rules against it.
    """
    run = read_record(run_dir)
    name = recipe or (run or {}).get("recipe")
    if not name and run is not None:
        raise UsageError(f"{run_dir / 'run.json'}: field 'recipe' missing; give --recipe NAME")
    if run is not None and run.get("recipe") not in (None, name):
        raise UsageError(f"--recipe {name}: the run in {run_dir} is of recipe {run.get('recipe')!r}")
    r = load_recipe(name) if name else None
    reference.check_blessable(run, run_dir, r, allow_skipped_preflight)
    exp = gate.load_expected(r.path("expected_metrics"))
    series = _collect(run_dir)
    result = gate.evaluate(exp, series, None if replace else reference.load_reference(exp.path))
    if not result.passed:
        click.echo(gate.format_table(result), err=True)
        raise RecipeError(f"refusing to bless {run_dir}: it fails its expected-metrics gate "
                          f"({len(result.failed_rows())} rule(s) not passed)", EXIT_REFUSED)
    prov = reference.provenance(run_dir, run, series)
    prov["allowed_skipped_preflight"] = allow_skipped_preflight
    try:
        out = reference.write_reference(series, exp.path, prov)
    except OSError as e:
        raise RecipeError(f"{reference.reference_path(exp.path)}: cannot write the reference ({e.strerror})",
                          EXIT_FAIL) from None
    n = sum(len(v) for v in series.values.values())
    click.echo(f"blessed {run_dir} as the reference of {name}: {out} ({len(series.values)} metrics, {n} values)")
    click.echo(f"next: `recipe lock {name} --recipe-files` to refresh the recipe's tag manifest, "
               f"then commit {out.name}")


@click.command("report")
@click.argument("path", type=PATH_ARG)
@click.option("--recipe", "recipe", metavar="NAME", help="Recipe whose expected metrics apply (default: run.json's).")
@click.option("--expected", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An expected-metrics TOML file instead of the recipe's.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: PATH/report).")
def report_cmd(path: Path, recipe: str | None, expected: Path | None, out: Path | None) -> None:
    """Plot every gated metric (series, band, bound) and write index.html with the verdicts.

    Needs the `report` extra (matplotlib): without it, exits 3 before reading anything.
    """
    require_matplotlib()

    expected_path, _ = _resolve_expected(path, recipe, expected)
    exp = gate.load_expected(expected_path)
    series = _collect(path)
    result = gate.evaluate(exp, series)
    out = out or ((path if path.is_dir() else path.parent) / "report")
    index = write_report(exp, series, result, out, title=str(path))
    click.echo(f"report: {index} ({'passed' if result.passed else 'FAILED'})")
