"""The gate's stdout reader (runner/gate/metrics.py) and the progress reader (runner/launch/progress.py)
over lines printed by miles' REAL logging functions, not lines written by hand in miles' format.

tests/data/miles_log_lines.py runs, in the upstream venv (tests/upstream_stack.py), miles @78527b91's
miles/ray/rollout/metrics.py log_rollout_data ("perf K"), log_eval_rollout_data ("eval K") and
miles/backends/training_utils/log_utils.py log_rollout_data / gather_log_data ("rollout K") and
log_train_step ("step K"), with miles' own logger set-up (configure_logger_raw), on CPU; the actor's
collectives on a single-process gloo group. It also records every dict those functions hand to miles'
tracking.log: what a tracker records, the truth the parsed lines are held to, bit for bit.

Each process's lines then go through Ray's own driver-side printer (ray._private.worker.print_worker_logs,
the function that puts "(MegatronTrainRayActor pid=N, ip=...) " before a worker's line, in its
default colour), interleaved, into a run's logs/run.log, as `ray job submit` carries them into the job's log.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from upstream_stack import MILES, PYTHON

from runner.gate.metrics import DERIVED_ZERO_STD, collect, same_bits, step_key_for
from runner.launch.progress import Progress

SCRIPT = Path(__file__).parent / "data" / "miles_log_lines.py"
ROLLOUTS, STEPS_PER_ROLLOUT = 3, 2   # as the script runs them


def ray_forwarded(lines: list[str], actor: str, pid: int, ip: str | None, color: str | None) -> str:
    """`lines` as Ray's driver prints a worker's lines (ray/_private/worker.py print_worker_logs)."""
    from ray._private.worker import print_worker_logs

    out = io.StringIO()
    env = {k: os.environ.pop(k) for k in ["RAY_COLOR_PREFIX"] if k in os.environ}
    if color is not None:
        os.environ["RAY_COLOR_PREFIX"] = color
    try:
        print_worker_logs({"pid": pid, "actor_name": actor, "lines": lines, "ip": ip or "10.0.0.1",
                           "localhost": "10.0.0.1"}, out)
    finally:
        os.environ.pop("RAY_COLOR_PREFIX", None)
        os.environ.update(env)
    return out.getvalue()


def decode(typed: list[str]) -> float:
    kind, text = typed
    if kind == "float":
        return float.fromhex(text)
    assert kind == "int", typed
    try:
        return float(int(text))
    except OverflowError:   # an int past float's range reads as inf, as the parser documents
        return math.inf if int(text) > 0 else -math.inf


@pytest.fixture(scope="module")
def miles_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("miles_out")
    r = subprocess.run([str(PYTHON), str(SCRIPT), str(out)], env={**os.environ, "PYTHONPATH": str(MILES)},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path_factory.mktemp("run")
    (run / "logs").mkdir()
    manager = (out / "rollout_manager.log").read_text().splitlines()
    actor = (out / "actor_cell0_rank0.log").read_text().splitlines()
    # Ray forwards in batches; interleave them, and the three prefix forms it prints
    text = "Job submission server address: http://127.0.0.1:8265\n"
    for i in range(0, max(len(manager), len(actor)), 5):
        text += ray_forwarded(manager[i:i + 5], "RolloutManager", 2211, None, None)
        text += ray_forwarded(actor[i:i + 5], "MegatronTrainRayActor", 2301, "10.0.0.2" if i % 2 else None,
                              "0" if i % 3 else None)
    (run / "logs" / "run.log").write_text(text)
    (run / "tracked.jsonl").write_bytes((out / "tracked.jsonl").read_bytes())
    return run


def tracked(run: Path) -> dict[str, dict[int, float]]:
    """metric -> step -> value, as miles handed them to tracking.log (the step from the dict's step key)."""
    want: dict[str, dict[int, float]] = {}
    for line in (run / "tracked.jsonl").read_text().splitlines():
        call = json.loads(line)
        metrics = call["metrics"]
        step = int(metrics[call["step_key"]][1])
        for name, typed in metrics.items():
            if name == call["step_key"]:
                continue
            assert step_key_for(name) == call["step_key"], name   # the parser keys it as miles does
            assert name not in want or step not in want[name], f"{name} twice at step {step}"
            want.setdefault(name, {})[step] = decode(typed)
    return want


def test_the_lines_are_miles_own(miles_run):
    log = (miles_run / "logs" / "run.log").read_text()
    # Ray's prefix, plain, with the ip, and in its default colour; miles' format after it
    assert "(MegatronTrainRayActor pid=2301) [" in log and "(MegatronTrainRayActor pid=2301, ip=10.0.0.2) [" in log
    assert "\x1b[36m(RolloutManager pid=2211)\x1b[0m [" in log
    for where in ("log_utils.py:542 - step 5: {", "log_utils.py:123 - rollout 2: {", "metrics.py:89 - perf 2: {",
                  "metrics.py:53 - eval 2: {"):
        assert where in log, where


def test_every_value_miles_logged_reads_back_bit_for_bit(miles_run):
    want = tracked(miles_run)
    assert {"rollout/stress/pass@k/pass@16", "train/big/int@max", "passrate/pass@4", "eval/gsm8k"} <= set(want)
    series = collect(miles_run)
    assert series.source == "stdout"
    assert series.skipped_lines == [] and series.conflicts == [] and series.unplaced == 0
    assert series.nonnumeric == {}
    got = {m: v for m, v in series.values.items() if m != DERIVED_ZERO_STD}
    assert sorted(got) == sorted(want)   # nothing missed, nothing invented
    wrong = [(m, s, got[m].get(s), v) for m, by_step in want.items() for s, v in by_step.items()
             if s not in got[m] or not same_bits(got[m][s], v)]
    assert wrong == []
    assert {m: sorted(v) for m, v in got.items()} == {m: sorted(v) for m, v in want.items()}
    assert series.steps("train/grad_norm") == list(range(ROLLOUTS * STEPS_PER_ROLLOUT))
    assert math.isnan(series.get("train/grad_norm", 3))
    assert series.steps("perf/rollout_time") == series.steps("eval/gsm8k") == list(range(ROLLOUTS))


def test_progress_sees_the_steps(miles_run, tmp_path):
    p = Progress(tmp_path / "no-events", total=ROLLOUTS, log=miles_run / "logs" / "run.log",
                 steps_per_rollout=STEPS_PER_ROLLOUT)
    assert p.poll()
    assert p.max_step == {"rollout/step": ROLLOUTS - 1, "train/step": ROLLOUTS * STEPS_PER_ROLLOUT - 1}
    assert p.done == p.generated == ROLLOUTS and p.finished


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
