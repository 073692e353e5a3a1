"""`recipe export RUN --tensorboard DIR`: a run's metrics as TensorBoard event files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from runner.console import safe
from runner.errors import EXIT_FAIL, EXIT_MISSING, RecipeError, UsageError


@click.command("export")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--tensorboard", "tb_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Log directory to write into: DIR/<run id>/events.out.tfevents.* (`tensorboard --logdir DIR`).")
def export_cmd(path: Path, tb_dir: Path) -> None:
    """Write every metric of run PATH (a run directory, events/ or a metrics file) as TensorBoard scalars.

    \b
    One event file per run under DIR/<run id>/ (the directory's name when there is no run.json),
    one scalar per metric and step, tagged with the metric's name. Nothing to install: the files
    are written directly (TFRecord framing, Event protobufs). Exporting a run again replaces its
    file. Metrics carry steps, not times, so every point has the run's start time as its wall time.
    Exits 4 if PATH has no metrics.
    """
    from runner.gate import metrics
    from runner.gate.tfevents import write_events
    from runner.records.record import read_record

    run = read_record(path) if path.is_dir() else None
    series = metrics.collect(path)
    if not series.values:
        raise RecipeError(safe(f"{path}: no metrics found (events/, logs/ or metrics.jsonl)"), EXIT_MISSING)
    name = (run or {}).get("run_id") or ""
    if not name.strip("."):   # "." or "..": a recorded id must not name DIR itself or its parent
        name = (path if path.is_dir() else path.parent).resolve().name
    started = (run or {}).get("started_at")
    try:
        wall = dt.datetime.fromisoformat(started).timestamp() if started else dt.datetime.now(dt.UTC).timestamp()
    except ValueError:
        raise UsageError(safe(f"{path / 'run.json'}: field 'started_at': expected an ISO time, got {started!r}")) \
            from None
    try:
        out = write_events(series, tb_dir, name, wall)
    except OSError as e:
        raise RecipeError(safe(f"--tensorboard {tb_dir}: cannot write ({e.strerror})"), EXIT_FAIL) from None
    n = sum(len(v) for v in series.values.values())
    click.echo(safe(f"exported {len(series.values)} metrics ({n} values) of {name}: {out}"))
    click.echo(safe(f"view: tensorboard --logdir {tb_dir}"), err=True)
