"""The tiny recipe's bitwise tier extends to resume: a run stopped by SIGTERM after step k (the
trainer saves a checkpoint and exits 143) and resumed with --load ends with every metric bit for bit
equal to the uninterrupted run of the same plan. And the test can fail: a resume from the same
checkpoint without its RNG states, or without its optimizer state, must differ."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, importorskip, recipe

importorskip("trl")

TRAIN = "actor_cell0_rank0.jsonl"


def plan_job(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The tiny recipe's rendered argv and job env, as `recipe run` would launch it."""
    p = recipe("plan", "nemotron3_nano_tiny", "--format", "json", env=clean_env(), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    return plan["argv"], {**clean_env(), **plan["env"]}


def argv_for(argv: list[str], run: Path, *extra: str) -> list[str]:
    out = list(argv)
    out[out.index("--save") + 1] = str(run / "trainer")
    out[out.index("--save-debug-event-data") + 1] = str(run / "events")
    out[out.index("--save-interval") + 1] = "100"  # checkpoints come from the signal only: a stop at step k
    return [sys.executable, str(ROOT / "recipes" / "nemotron3_nano_tiny" / "train_grpo.py"), *out, *extra]


def metrics(events: Path, upto: int | None = None) -> list[dict]:
    """Every non-wall-clock metric, per event line, of the train and rollout streams."""
    out = []
    for name in (TRAIN, "rollout_manager.jsonl"):
        for line in (events / name).read_text().splitlines():
            m = json.loads(line)["metrics"]
            step = m.get("train/step", m.get("rollout/step"))
            if upto is None or step < upto:
                out.append({k: v for k, v in m.items() if not k.startswith("perf/")})
    return out


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path):
    argv, env = plan_job(tmp_path)
    base = run(argv_for(argv, tmp_path / "base"), env)
    assert base.returncode == 0, base.stderr[-3000:]
    want = metrics(tmp_path / "base" / "events")
    assert len(want) == 20

    # The same run, stopped for real: SIGTERM once its second step is logged.
    a = tmp_path / "a"
    proc = subprocess.Popen(argv_for(argv, a), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        log = a / "events" / TRAIN
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, out[-3000:]
    (ckpt,) = (a / "trainer").glob("checkpoint-*")
    k = int(ckpt.name.split("-")[1])
    assert 2 <= k < 10 and (ckpt / "complete").is_file()
    assert metrics(a / "events") == want[:k] + want[10:10 + k]  # what ran before the stop is the baseline's

    # An incomplete newer checkpoint (a save cut short) is named and passed over.
    (a / "trainer" / f"checkpoint-{k + 1}").mkdir()
    b = tmp_path / "b"
    resumed = run(argv_for(argv, b, "--load", str(a / "trainer")), env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint-{k + 1}: incomplete checkpoint" in resumed.stderr
    assert f"resuming from {ckpt}" in resumed.stderr
    got = metrics(a / "events", upto=k) + metrics(b / "events")
    got = sorted(got, key=lambda m: ("train/step" not in m, m.get("train/step", m.get("rollout/step"))))
    assert got == want

    # Leave out one kind of state and the resumed metrics are no longer the baseline's.
    for missing in ("rng_state.pth", "optimizer.pt"):
        lone = tmp_path / f"without-{missing}" / "trainer"
        shutil.copytree(ckpt, lone / ckpt.name)
        (lone / ckpt.name / missing).unlink()
        c = lone.parent / "run"
        p = run(argv_for(argv, c, "--load", str(lone)), env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert metrics(c / "events") != [m for m in want if m.get("train/step", m.get("rollout/step")) >= k], missing
