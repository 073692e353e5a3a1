"""`recipe export RUN --tensorboard DIR`: a run's metrics as TensorBoard event files.

The file is made by tensorboard's own record writer (the TFRecord framing its EventFileWriter, and so
torch's SummaryWriter, writes through) from tensorboard's own Event protobufs: the `export` extra.
Not EventFileWriter itself: it names each file after the host, pid and clock and writes from a thread
as it goes, and an export must be one complete file under one name that a re-export replaces.
tensorboard is imported only here, inside the command, so `recipe --help` does not pay for it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from runner.console import safe
from runner.errors import EXIT_FAIL, EXIT_MISSING, EXIT_PREFLIGHT, RecipeError, UsageError

INT64 = range(-(2**63), 2**63)   # an Event's step


def _tensorboard():
    """tensorboard's Event protobufs and record writer, or exit 3 naming the extra that brings them."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as e:
        raise RecipeError(f"recipe export needs tensorboard, which is not installed here ({e.__class__.__name__}: "
                          f"{e}); install the export extra: pip install 'recipe-bundle[export]' (in a checkout: "
                          f"ci/bootstrap.sh export)",
                          EXIT_PREFLIGHT) from None
    return event_pb2, summary_pb2, RecordWriter


def events_bytes(series, wall_time: float, source: Path) -> bytes:
    """The version event, then one event per step (in step order) holding a scalar per metric at that step.
    NaN and inf are kept; a finite value beyond float32 becomes the infinity it rounds to (protobuf)."""
    import io

    event_pb2, summary_pb2, RecordWriter = _tensorboard()
    by_step: dict[int, list] = {}
    for metric, steps in sorted(series.values.items()):
        for step, v in steps.items():
            if step not in INT64:
                shown = str(step) if len(str(step)) <= 40 else f"of {len(str(step))} digits"
                raise UsageError(f"{source}: metric {metric!r}: step {shown} does not fit an event file's "
                                 f"step (a signed 64-bit integer)")
            by_step.setdefault(step, []).append(summary_pb2.Summary.Value(tag=metric, simple_value=v))
    buf = io.BytesIO()
    out = RecordWriter(buf)
    out.write(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())
    for step in sorted(by_step):
        summary = summary_pb2.Summary(value=by_step[step])
        out.write(event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString())
    return buf.getvalue()


@click.command("export")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--tensorboard", "tb_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Log directory to write into: DIR/<run id>/events.out.tfevents.* (`tensorboard --logdir DIR`).")
def export_cmd(path: Path, tb_dir: Path) -> None:
    """Write every metric of run PATH (a run directory, events/ or a metrics file) as TensorBoard scalars.

    \b
    One event file per run under DIR/<run id>/ (the directory's name when there is no run.json),
    one scalar per metric and step, tagged with the metric's name. Needs the `export` extra
    (tensorboard): without it, exits 3 before reading anything. Exporting a run again replaces
    its file. Metrics carry steps, not times, so every point has the run's start time as its
    wall time. Exits 4 if PATH has no metrics.
    """
    from runner.atomicfile import write_bytes_atomic
    from runner.gate import metrics
    from runner.records.record import read_record

    _tensorboard()
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
    data = events_bytes(series, wall, path)
    # one name per run and start time, written whole: a re-export replaces it, TensorBoard never sees half
    # run_id is data: no "/" and no all-dots name ("..") that would lead out of DIR
    fname = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    fname = fname if fname.strip(".") else "run"
    out = tb_dir / fname / f"events.out.tfevents.{int(wall)}.recipe"
    try:
        write_bytes_atomic(out, data)
    except OSError as e:
        raise RecipeError(safe(f"--tensorboard {tb_dir}: cannot write ({e.strerror})"), EXIT_FAIL) from None
    n = sum(len(v) for v in series.values.values())
    click.echo(safe(f"exported {len(series.values)} metrics ({n} values) of {name}: {out}"))
    click.echo(safe(f"view: tensorboard --logdir {tb_dir}"), err=True)
