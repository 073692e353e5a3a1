"""Collecting a run's metrics: miles event files, the stdout fallback, the rank rule, metrics.jsonl."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import EXIT_CORRUPT, RecipeError
from runner.gate.evaluate import compare_exact
from runner.gate.metrics import (
    DERIVED_ZERO_STD,
    collect,
    parse_py_literal,
    read_metrics_jsonl,
    step_key_for,
    write_metrics_jsonl,
)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "data" / "events"
STDOUT = ROOT / "tests" / "data" / "stdout"


def metric_line(source: dict, metrics: dict) -> str:
    return json.dumps({"timestamp": "2026-08-21T10:00:00.000001Z", "source": source, "type": "metric",
                       "rollout_id": None, "attempt": None, "metrics": metrics}, separators=(",", ":"))


MAIN = {"component": "main"}
RM = {"component": "rollout_manager"}


def actor(rank: int) -> dict:
    return {"component": "actor", "cell_index": 0, "rank_within_cell": rank}


def test_controls_are_what_the_generator_writes():
    # The committed controls are reproducible from their script and seed.
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "data" / "make_metric_controls.py"), "--check"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_healthy_events_become_one_series_per_metric_and_step():
    s = collect(EVENTS / "healthy")
    assert s.source == "events"
    assert s.key_steps("train/step") == list(range(10))
    assert s.key_steps("rollout/step") == list(range(10))
    # train/* from actor rank 4, trainer-side rollout/* from ranks 0 and 4 (identical), generation from the manager
    assert s.steps("train/train_rollout_logprob_abs_diff") == list(range(10))
    assert s.steps("rollout/raw_reward") == list(range(10))
    assert s.steps("perf/rollout_time") == list(range(10))
    assert not any(m.endswith("/step") for m in s.metrics())      # step keys are not series
    assert s.conflicts == [] and s.unplaced == 0
    first = json.loads((EVENTS / "healthy" / "actor_cell0_rank4.jsonl").read_text().splitlines()[1])
    assert s.get("train/grad_norm", 0) == first["metrics"]["train/grad_norm"]
    # derived: the zero-std fraction is the sum of the all-0 and all-1 fractions
    for step in range(10):
        assert s.get(DERIVED_ZERO_STD, step) == (s.get("rollout/zero_std/all_zero_percentage", step)
                                                 + s.get("rollout/zero_std/all_one_percentage", step))


def test_null_in_events_is_nan():
    s = collect(EVENTS / "nan_grad_norm")
    assert math.isnan(s.get("train/grad_norm", 5))
    assert math.isfinite(s.get("train/grad_norm", 4))


def test_partial_last_line_of_a_killed_process_is_skipped_not_fatal(tmp_path):
    s = collect(EVENTS / "stopped_after_6")
    assert s.key_steps("train/step") == list(range(6))
    assert s.skipped_lines == ["actor_cell0_rank4.jsonl:19: partial last line"]
    # ...but a broken line in the middle of a file is corruption
    d = tmp_path / "events"
    d.mkdir()
    (d / "main.jsonl").write_text(metric_line(MAIN, {"train/loss": 1.0, "train/step": 0}) + "\n{oops\n"
                                  + metric_line(MAIN, {"train/loss": 1.0, "train/step": 1}) + "\n")
    with pytest.raises(RecipeError) as ei:
        collect(tmp_path)
    assert ei.value.code == EXIT_CORRUPT and "main.jsonl:2" in ei.value.message


def test_stdout_fallback_matches_events_bit_for_bit():
    ev, out = collect(EVENTS / "healthy"), collect(STDOUT / "healthy")
    assert out.source == "stdout"
    assert compare_exact(ev, out) == []
    nan_out = collect(STDOUT / "nan_grad_norm")
    assert compare_exact(collect(EVENTS / "nan_grad_norm"), nan_out) == []
    assert math.isnan(nan_out.get("train/grad_norm", 5))


def test_rank_rule_precedence_and_conflicts(tmp_path):
    d = tmp_path / "events"
    d.mkdir()
    # rank 4 logs first in time, rank 0 disagrees: rank 0 wins (lower rank), the disagreement is recorded
    (d / "actor_cell0_rank4.jsonl").write_text(metric_line(actor(4), {"rollout/raw_reward": 0.5,
                                                                      "rollout/step": 0}) + "\n")
    (d / "actor_cell0_rank0.jsonl").write_text(metric_line(actor(0), {"rollout/raw_reward": 0.25,
                                                                      "rollout/step": 0}) + "\n")
    # the rollout manager outranks any actor; main outranks the rollout manager
    (d / "rollout_manager.jsonl").write_text(metric_line(RM, {"rollout/truncated_ratio": 0.1, "rollout/step": 0})
                                             + "\n")
    (d / "zz_actor.jsonl").write_text(metric_line(actor(1), {"rollout/truncated_ratio": 0.1, "rollout/step": 0})
                                      + "\n")
    # within one process the later line wins (a retried step), and that is not a conflict
    (d / "main.jsonl").write_text(metric_line(MAIN, {"train/loss": 1.0, "train/step": 3}) + "\n"
                                  + metric_line(MAIN, {"train/loss": 2.0, "train/step": 3}) + "\n")
    s = collect(tmp_path)
    assert s.get("rollout/raw_reward", 0) == 0.25
    assert s.get("train/loss", 3) == 2.0
    assert s.get("rollout/truncated_ratio", 0) == 0.1
    assert s.conflicts == [{"metric": "rollout/raw_reward", "step": 0, "kept": ["actor_cell0_rank0", 0.25],
                            "other": ["actor_cell0_rank4", 0.5]}]


def test_values_without_their_step_key_are_unplaced(tmp_path):
    d = tmp_path / "events"
    d.mkdir()
    (d / "main.jsonl").write_text(metric_line(MAIN, {"train/loss": 1.0, "rollout/step": 0}) + "\n"
                                  + metric_line(MAIN, {"perf/x_time": 1.0, "rollout/step": 2, "note": "text"}) + "\n"
                                  + json.dumps({"type": "train_group_step_end", "rollout_id": 0}) + "\n")
    s = collect(tmp_path)
    assert s.unplaced == 1                   # train/loss needs train/step
    assert s.values == {"perf/x_time": {2: 1.0}}   # strings are not metrics; other event types ignored


def test_step_keys():
    assert step_key_for("train/grad_norm") == "train/step"
    assert step_key_for("rollout/raw_reward") == "rollout/step"
    assert step_key_for("perf/step_time") == "rollout/step"
    assert step_key_for("eval/aime") == "eval/step"


def test_py_literal_parser_is_safe_and_handles_miles_reprs():
    d = parse_py_literal("{'a': nan, 'b': -inf, 'c': inf, 'd': np.float64(0.5), 'e': tensor(2.0), "
                         "'f': float('nan'), 'g': 3, 'h': 'text', 'i': [1, 2], 'j': None, 'k': True}")
    assert math.isnan(d["a"]) and d["b"] == -math.inf and d["c"] == math.inf
    assert d["d"] == 0.5 and d["e"] == 2.0 and math.isnan(d["f"]) and d["g"] == 3 and d["h"] == "text"
    for evil in ("{'a': __import__('os').system('false')}", "{'a': open('/etc/passwd')}",
                 "{'a': (lambda: 1)()}", "{'a': 1 + 1}", "{**x}", "{'a': x}"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_py_literal(evil)


def test_narrow_numpy_floats_read_as_their_own_width():
    # numpy prints float32's shortest repr; the value a tracker records is float32(0.1), not 0.1
    d = parse_py_literal("{'a': np.float32(0.1), 'b': np.float16(0.1), 'c': np.float32(nan), 'd': np.float32(-inf), "
                         "'e': np.float64(0.1)}")
    assert d["a"] == struct.unpack("f", struct.pack("f", 0.1))[0] == 0.10000000149011612
    assert d["b"] == 0.0999755859375 and math.isnan(d["c"]) and d["d"] == -math.inf and d["e"] == 0.1


def test_stdout_line_shapes(tmp_path):
    log = tmp_path / "job.log"
    log.write_text(
        "(MegatronTrainRayActor pid=1) [2026-08-21 10:00:00.1 actor_cell0_rank4] log_utils.py:542 - "
        "step 0: {'train/loss': nan, 'train/grad_norm': inf, 'train/step': 0}\n"
        "[2026-08-21 10:00:01.1 actor_cell0_rank4] train_metric_utils.py:56 - perf 0: {'perf/step_time': 9.5}\n"
        "[2026-08-21 10:00:01.1 rollout_manager] metrics.py:89 - perf 1: {'rollout/raw_reward': np.float64(0.25)}\n"
        "[2026-08-21 10:00:01.1 x] log_utils.py:123 - rollout 2: {'rollout/log_probs': -0.4\n"   # cut off
        "some line - step 3: {not a dict}\n"
        "a step 4: {'train/loss': 1.0} without the ' - ' logging separator\n")
    s = collect(log)
    assert math.isnan(s.get("train/loss", 0)) and s.get("train/grad_norm", 0) == math.inf
    assert s.get("perf/step_time", 0) == 9.5          # the perf line's K is the rollout step
    assert s.get("rollout/raw_reward", 1) == 0.25
    assert "rollout/log_probs" not in s.values
    assert s.skipped_lines == ["job.log:5: unparsable metrics dict (SyntaxError)"]
    assert s.key_steps("train/step") == [0]


def test_metrics_jsonl_round_trips_bit_for_bit(tmp_path):
    s = collect(EVENTS / "nan_grad_norm")
    s.values["train/extra"] = {0: math.inf, 1: -math.inf, 2: -0.0, 3: 0.1 + 0.2}
    out = write_metrics_jsonl(s, tmp_path / "metrics.jsonl")
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "recipe-metrics" and header["source"] == "events" and "rank_rule" in header
    assert all("NaN" not in line and "Infinity" not in line for line in lines)   # strict JSON
    back = read_metrics_jsonl(out)
    assert compare_exact(s, back) == []
    assert math.copysign(1.0, back.get("train/extra", 2)) == -1.0
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"]   # no temp file left
    # collect() on the file, or on a directory holding only it, reads it back too
    assert compare_exact(s, collect(out)) == []
    # a corrupt metrics.jsonl is EXIT_CORRUPT with the line number
    out.write_text(lines[0] + "\n" + '{"metric": "x"}\n')
    with pytest.raises(RecipeError) as ei:
        read_metrics_jsonl(out)
    assert ei.value.code == EXIT_CORRUPT and ":2:" in ei.value.message


def test_run_dir_layout_events_then_logs_then_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(STDOUT / "healthy", run)                       # logs/run.log only
    assert collect(run).source == "stdout"
    shutil.copytree(EVENTS / "healthy", run / "events")            # events/ wins over logs
    assert collect(run).source == "events"
    empty = tmp_path / "empty"
    empty.mkdir()
    s = collect(empty)
    assert s.source == "none" and s.values == {}
