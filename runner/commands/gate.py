"""`recipe check`, `recipe bless`, `recipe report`: the expected-metrics gate from the command line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from runner.console import safe
from runner.errors import EXIT_FAIL, EXIT_MISSING, EXIT_OK, EXIT_REFUSED, RecipeError, UsageError
from runner.gate import evaluate as gate
from runner.gate import metrics, reference
from runner.gate.expected import load_expected
from runner.gate.report import require_matplotlib, write_report
from runner.recipe import load_recipe
from runner.records.bless import check_blessable
from runner.records.record import RunStatus, read_record, status_of

PATH_ARG = click.Path(exists=True, path_type=Path)


def _resolve_expected(path: Path, recipe: str | None, expected: Path | None) -> tuple[Path, dict | None]:
    """The expected-metrics file for PATH: --expected, else --recipe, else run.json's "recipe"."""
    run = read_record(path) if path.is_dir() else None
    if expected is not None:
        return expected, run
    name = recipe or (run or {}).get("recipe")
    if not name:
        raise UsageError(safe(f"{path}: no run.json naming the recipe; give --recipe NAME or --expected FILE"))
    r = load_named_recipe(name)
    return r.path("expected_metrics"), run


def load_named_recipe(name: str):
    """load_recipe, its refusal made safe to print: the name may come from a received run.json."""
    try:
        return load_recipe(name)
    except RecipeError as e:
        raise RecipeError(safe(e.message), e.code) from None


def _collect(path: Path):
    series = metrics.collect(path)
    if not series.values:
        raise RecipeError(f"{safe(path)}: no metrics found (looked for miles event files in events/ or *.jsonl, "
                          "stdout logs in logs/*.log or *.log, and metrics.jsonl)", EXIT_MISSING)
    return series


@click.command("check")
@click.argument("path", type=PATH_ARG)
@click.option("--recipe", "recipe", metavar="NAME", help="Recipe whose expected metrics apply (default: run.json's).")
@click.option("--expected", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An expected-metrics TOML file instead of the recipe's.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON instead of a table.")
@click.option("--write", is_flag=True, help="Also keep this verdict in the run directory, as gate.check-<time>.json "
              "and metrics.check-<time>.jsonl beside (never over) what the run recorded.")
def check_cmd(path: Path, recipe: str | None, expected: Path | None, as_json: bool, write: bool) -> int:
    """Check a run's metrics against its recipe's expected metrics.

    PATH is a run directory (run.json, events/, logs/), a directory of miles event files, or one
    event/log/metrics.jsonl file. Prints rule, observed, bound, verdict and why; exits 1 if any
    rule fails. A run that stopped before its own last step (interrupted, failed, or events that
    end early) gets one line instead of the table, "interrupted at step 4/10", and exit 1: no rule
    can judge the steps it never reached (--json still lists every rule). Writes nothing unless
    --write: the run's own gate.json, metrics.jsonl and run.json are what `recipe run` recorded and
    stay so; --write adds gate.check-<time>.json and
    metrics.check-<time>.jsonl to a run directory.
    """
    expected_path, run = _resolve_expected(path, recipe, expected)
    exp = load_expected(expected_path)
    series = _collect(path)
    result = gate.evaluate(exp, series)
    if write:
        _write_check(path, series, result)
    stopped = result.stopped()
    if as_json:
        doc = result.as_dict()
        if stopped:
            doc["stopped"] = {"steps_done": stopped[0], "steps_planned": stopped[1]}
        click.echo(json.dumps(gate.json_safe(doc), indent=2))
    elif stopped:
        word = "failed" if status_of(run) == RunStatus.FAILED else "interrupted"
        click.echo(safe(f"{word} at step {stopped[0]}/{stopped[1]}: the gate needs all {stopped[1]} steps of the "
                        f"run; `recipe check {shlex.quote(str(path))} --json` lists every rule"))
    else:
        click.echo(gate.format_table(result))
        if series.conflicts:
            click.echo(f"note: {len(series.conflicts)} value(s) logged differently by two processes; "
                       "kept per the rank rule (see metrics.jsonl header)", err=True)
        if series.unplaced:
            click.echo(f"note: {series.unplaced} value(s) had no step key in their event and were not placed",
                       err=True)
        for line in series.skipped_lines[:5]:
            click.echo(safe(f"note: skipped {line}"), err=True)
    return EXIT_OK if result.passed else EXIT_FAIL


def _write_check(path: Path, series, result) -> None:
    """gate.check-<UTC time>.json and metrics.check-<UTC time>.jsonl in the run directory, never over a file."""
    import datetime as dt

    if not path.is_dir():
        raise UsageError(safe(f"--write: {path} is not a run directory; the verdict goes beside a run's own "
                              "gate.json"))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    gate_out, metrics_out = path / f"gate.check-{stamp}.json", path / f"metrics.check-{stamp}.jsonl"
    try:
        metrics.write_metrics_jsonl(series, metrics_out)
        gate.write_gate_json(result, gate_out)
    except OSError as e:
        raise RecipeError(safe(f"--write: {path}: cannot write {gate_out.name} ({e.strerror})"), EXIT_FAIL) from None
    click.echo(safe(f"recipe: wrote {gate_out.name} and {metrics_out.name} in {path} "
                    "(the run's gate.json and run.json are unchanged)"), err=True)


@click.command("bless")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--recipe", "recipe", metavar="NAME", help="Recipe to bless into (default: run.json's).")
@click.option("--replace", is_flag=True,
              help="Replace the recipe's existing reference (kept under reference_history/), judging the run "
              "without that reference's bands.")
@click.option("--allow-skipped-preflight", is_flag=True,
              help="Bless a run that skipped preflight checks; the reference records that it did.")
def bless_cmd(run_dir: Path, recipe: str | None, replace: bool, allow_skipped_preflight: bool) -> None:
    """Make a trusted run the recipe's reference series (reference_metrics.jsonl).

    \b
    Only a run recorded by `recipe run` that succeeded, whose recipe files are those of the recipe
    now, that ran every preflight check (or --allow-skipped-preflight) and that passes its gate.
    A recipe that has a reference already keeps it unless --replace: the old one then moves to
    reference_history/<time>-<run id>/ beside it. A shortened run (--num-rollout below the recipe's)
    is refused too. Refusals exit 6; a malformed run.json exits 2.
    Later runs are then held to the band and relative rules against it.
    """
    run = read_record(run_dir)
    name = recipe or (run or {}).get("recipe")
    if not name and run is not None:
        raise UsageError(safe(f"{run_dir / 'run.json'}: field 'recipe' missing; give --recipe NAME"))
    if run is not None and run.get("recipe") not in (None, name):
        raise UsageError(safe(f"--recipe {name}: the run in {run_dir} is of recipe {run.get('recipe')!r}"))
    r = load_named_recipe(name) if name else None
    check_blessable(run, run_dir, r, allow_skipped_preflight)
    exp = load_expected(r.path("expected_metrics"))
    current = reference.reference_path(exp.path)
    if current.exists() and not replace:
        prov = reference.reference_provenance(exp.path) or {}
        raise RecipeError(safe(f"recipe {name} already has a reference ({current}, blessed from "
                               f"{prov.get('run_id', '?')} at {prov.get('blessed_at', '?')}); --replace to replace "
                               "it (the current one is then kept under reference_history/)"), EXIT_REFUSED)
    series = _collect(run_dir)
    # the run is judged without the reference it replaces: re-baselining means leaving its bands
    result = gate.evaluate(exp, series, None)
    if not result.passed:
        click.echo(gate.format_table(result), err=True)
        raise RecipeError(safe(f"refusing to bless {run_dir}: it fails its expected-metrics gate "
                               f"({len(result.failed_rows())} rule(s) not passed)"), EXIT_REFUSED)
    na = [r for r in result.rows if r.verdict == gate.NA]
    if na:   # a reference of fewer steps would leave the later steps of every run unchecked
        raise RecipeError(safe(f"refusing to bless {run_dir}: {na[0].detail} (num_rollout below the recipe's); a "
                               "reference must be a full-length run"), EXIT_REFUSED)
    prov = reference.provenance(run_dir, run, series)
    prov["allowed_skipped_preflight"] = allow_skipped_preflight
    try:
        kept = reference.keep_in_history(exp.path) if current.exists() else None
        out = reference.write_reference(series, exp.path, prov)
    except OSError as e:
        raise RecipeError(f"{reference.reference_path(exp.path)}: cannot write the reference ({e.strerror})",
                          EXIT_FAIL) from None
    n = sum(len(v) for v in series.values.values())
    click.echo(safe(f"blessed {run_dir} as the reference of {name}: {out} ({len(series.values)} metrics, {n} values)"))
    if kept:
        click.echo(f"the reference it replaced is kept as {kept}")
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

    The page starts with the run's provenance from run.json (run id, recipe, cell, image, bundle
    commit, seeds, host, packages where recorded); each plot names its run and its axes' units.
    Needs the `report` extra (matplotlib): without it, exits 3 before reading anything.
    For TensorBoard instead: `recipe export RUN --tensorboard DIR`.
    """
    require_matplotlib()

    expected_path, run = _resolve_expected(path, recipe, expected)
    exp = load_expected(expected_path)
    series = _collect(path)
    result = gate.evaluate(exp, series)
    out = out or report_dir(path if path.is_dir() else path.parent)
    index = write_report(exp, series, result, out, title=str(path), run=run)
    click.echo(safe(f"report: {index} ({'passed' if result.passed else 'FAILED'})"))


def report_dir(run_dir: Path) -> Path:
    """RUN/report, where the report goes by default: refused if it is a link, or resolves outside the run
    directory, so that a received run cannot make the report write where it points (--out chooses)."""
    out = run_dir / "report"
    if out.is_symlink() or (out.exists() and not out.resolve().is_relative_to(run_dir.resolve())):
        raise UsageError(safe(f"{out}: a link (to {out.resolve()}), not a directory of the run; the report "
                              "writes only inside the run directory: remove it, or give --out DIR"))
    if out.exists() and not out.is_dir():
        raise UsageError(safe(f"{out}: not a directory; remove it, or give --out DIR"))
    return out
