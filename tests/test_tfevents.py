"""`recipe export RUN --tensorboard DIR`: the event files we write ourselves, read back by tensorboard's
own reader where it is installed, and checked byte by byte against the TFRecord framing otherwise."""

from __future__ import annotations

import json
import math
import shutil
import struct

import pytest
from conftest import ROOT, recipe

from runner.errors import EXIT_MISSING
from runner.gate.metrics import Series, collect
from runner.gate.tfevents import crc32c, events_bytes, masked_crc

EVENTS = ROOT / "tests" / "data" / "events"


def test_crc32c_matches_the_castagnoli_check_value():
    assert crc32c(b"123456789") == 0xE3069283          # the CRC-32C check value (RFC 3720 B.4)
    assert crc32c(b"") == 0


def split_records(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        assert struct.unpack_from("<I", data, i + 8)[0] == masked_crc(data[i:i + 8])
        payload = data[i + 12:i + 12 + n]
        assert struct.unpack_from("<I", data, i + 12 + n)[0] == masked_crc(payload)
        out.append(payload)
        i += 16 + n
    return out


def test_framing_one_record_per_step_after_the_version_record():
    s = Series(values={"a": {0: 1.0, 2: 3.0}, "b": {2: math.nan}})
    recs = split_records(events_bytes(s, 1.5e9))
    assert len(recs) == 3 and b"brain.Event:2" in recs[0]
    assert b"a" in recs[1] and b"b" not in recs[1] and b"b" in recs[2]


def make_run(tmp_path, control="healthy"):
    d = tmp_path / "run"
    shutil.copytree(EVENTS / control, d / "events")
    (d / "run.json").write_text(json.dumps({"schema": 1, "status": "succeeded", "recipe": "nemotron3_nano",
                                            "run_id": "20260821T100000Z-x", "started_at": "2026-08-21T10:00:00+00:00"}))
    return d


def test_tensorboard_reads_back_every_value_we_exported(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    d = make_run(tmp_path, "nan_grad_norm")
    r = recipe("export", str(d), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == 0, r.stderr
    (f,) = (tmp_path / "tb" / "20260821T100000Z-x").glob("events.out.tfevents.*")
    ea = EventAccumulator(str(f.parent))
    ea.Reload()
    series = collect(d)
    assert sorted(ea.Tags()["scalars"]) == sorted(series.values)
    for metric, steps in series.values.items():
        got = {e.step: e.value for e in ea.Scalars(metric)}
        assert sorted(got) == sorted(steps)
        for step, v in steps.items():
            want = struct.unpack("<f", struct.pack("<f", v))[0]      # as float32 holds it
            assert (math.isnan(got[step]) and math.isnan(want)) or got[step] == want, (metric, step)
        assert all(e.wall_time == 1787306400.0 for e in ea.Scalars(metric))   # the run's start
    # a second export replaces the file rather than doubling every point
    assert recipe("export", str(d), "--tensorboard", str(tmp_path / "tb")).returncode == 0
    assert len(list(f.parent.iterdir())) == 1


def test_export_without_metrics_is_one_line_exit_4(tmp_path):
    (tmp_path / "empty").mkdir()
    r = recipe("export", str(tmp_path / "empty"), "--tensorboard", str(tmp_path / "tb"))
    assert r.returncode == EXIT_MISSING and r.stderr.count("\n") == 1 and not (tmp_path / "tb").exists()
