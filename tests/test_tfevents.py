"""`recipe export RUN --tensorboard DIR`: event files written by tensorboard's own record writer and
protobufs (the `export` extra), read back by tensorboard's own readers; without the extra, one line
naming it and exit 3."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys

import pytest
from conftest import ROOT, clean_env, recipe

from runner.errors import EXIT_MISSING, EXIT_PREFLIGHT, EXIT_USAGE
from runner.gate.metrics import Series, collect, write_metrics_jsonl

EVENTS = ROOT / "tests" / "data" / "events"
START = 1787306400.0   # 2026-08-21T10:00:00+00:00, the planted run's started_at


def make_run(tmp_path, control="healthy"):
    d = tmp_path / "run"
    shutil.copytree(EVENTS / control, d / "events")
    (d / "run.json").write_text(json.dumps({"schema": 1, "status": "succeeded", "recipe": "nemotron3_nano",
                                            "run_id": "20260821T100000Z-x", "started_at": "2026-08-21T10:00:00+00:00"}))
    return d


def read_events(path) -> list:
    """Every Event of one file as written, in file order, through tensorboard's own loader (it checks the
    framing and CRCs; the legacy loader leaves simple_value as written rather than migrating it)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    return list(LegacyEventFileLoader(str(path)).Load())


def f32(v: float) -> float:
    """v as a float32 holds it; a finite value beyond its range is the infinity it rounds to."""
    if math.isfinite(v) and abs(v) > 3.4028234663852886e38:
        return math.copysign(math.inf, v)
    return struct.unpack("<f", struct.pack("<f", v))[0]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_tensorboard_reads_back_every_value_we_exported(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    d = make_run(tmp_path, "nan_grad_norm")
    r = recipe("export", str(d), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == 0, r.stderr
    (f,) = (tmp_path / "tb" / "20260821T100000Z-x").iterdir()
    assert f.name == f"events.out.tfevents.{int(START)}.recipe" and str(f) in r.stdout
    ea = EventAccumulator(str(f.parent))
    ea.Reload()
    series = collect(d)
    assert any(math.isnan(v) for steps in series.values.values() for v in steps.values())   # the NaN is kept
    assert sorted(ea.Tags()["scalars"]) == sorted(series.values)
    for metric, steps in series.values.items():
        got = {e.step: e.value for e in ea.Scalars(metric)}
        assert sorted(got) == sorted(steps)
        for step, v in steps.items():
            assert same(got[step], f32(v)), (metric, step)
        assert all(e.wall_time == START for e in ea.Scalars(metric))   # the run's start
    # the file: the version event first, then one event per step in step order, all at the run's start
    events = read_events(f)
    assert events[0].file_version == "brain.Event:2" and not events[0].HasField("summary")
    steps = sorted({s for v in series.values.values() for s in v})
    assert [e.step for e in events[1:]] == steps and all(e.wall_time == START for e in events)
    # a second export replaces the file rather than doubling every point, with the same bytes
    before = f.read_bytes()
    assert recipe("export", str(d), "--tensorboard", str(tmp_path / "tb")).returncode == 0
    assert list(f.parent.iterdir()) == [f] and f.read_bytes() == before


def test_extreme_values_and_steps_of_a_metrics_file(tmp_path):
    """inf, -inf, NaN, a value beyond float32 (shown as the infinity it rounds to) and a negative step."""
    pytest.importorskip("tensorboard")
    values = {"a": {-3: 1e39, 0: -1e39, 5: math.inf}, "b": {0: math.nan, 7: -math.inf, 9: 0.1}}
    src = write_metrics_jsonl(Series(values=values), tmp_path / "m" / "metrics.jsonl")
    r = recipe("export", str(src), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == 0, r.stderr
    (f,) = (tmp_path / "tb" / "m").iterdir()
    got: dict[str, dict[int, float]] = {}
    for e in read_events(f)[1:]:
        for v in e.summary.value:
            got.setdefault(v.tag, {})[e.step] = v.simple_value
    assert got.keys() == values.keys()
    for metric, steps in values.items():
        assert sorted(got[metric]) == sorted(steps)
        assert all(same(got[metric][s], f32(v)) for s, v in steps.items()), metric


def test_a_step_beyond_int64_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    """An event file's step is an int64: a bigger step is refused, not wrapped onto another step."""
    src = tmp_path / "m" / "metrics.jsonl"
    write_metrics_jsonl(Series(values={"loss": {1: 0.5, 2**64 + 1: 0.25}}), src)
    r = recipe("export", str(src), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.count("\n") == 1 and "'loss'" in r.stderr and str(2**64 + 1) in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "tb").exists()


@pytest.mark.parametrize("run_id,folder", [("..", "run"), (".", "run"), ("a/../../b", "a_.._.._b")])
def test_a_run_id_from_run_json_cannot_lead_out_of_the_log_directory(tmp_path, run_id, folder):
    pytest.importorskip("tensorboard")
    d = make_run(tmp_path)
    record = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**record, "run_id": run_id}))
    tb = tmp_path / "out" / "tb"
    r = recipe("export", str(d), "--tensorboard", str(tb))
    assert r.returncode == 0, r.stderr
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written == [tb / folder / f"events.out.tfevents.{int(START)}.recipe"]


def test_export_without_the_extra_names_it_in_one_line_exit_3(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "tensorboard").mkdir(parents=True)
    # an installation without tensorboard, as the import system reports it
    (shadow / "tensorboard" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorboard'\", name='tensorboard')\n")
    d = make_run(tmp_path)
    r = recipe("export", str(d), "--tensorboard", str(tmp_path / "tb"), env=clean_env(PYTHONPATH=f"{shadow}:{ROOT}"))
    assert r.returncode == EXIT_PREFLIGHT, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'recipe-bundle[export]'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "tb").exists()


def test_the_cli_starts_without_importing_tensorboard():
    code = ("import sys, runner.cli, runner.commands.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'google', 'numpy')))")
    p = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_export_without_metrics_is_one_line_exit_4(tmp_path):
    (tmp_path / "empty").mkdir()
    r = recipe("export", str(tmp_path / "empty"), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == EXIT_MISSING and r.stderr.count("\n") == 1 and not (tmp_path / "tb").exists()
