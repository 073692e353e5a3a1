"""`recipe resume RUN`: a tiny run stopped for real (Ctrl-C to `recipe run` once a checkpoint is
complete) continues from that checkpoint into a new run directory that links it; the chain's metrics
are seen once by the gate and `recipe check`; `recipe runs` shows what it resumes; `recipe replay`
of the resumed run reruns it from the start and equals the chain bit for bit. Refusals: a run that
finished, and a run whose checkpoints are all incomplete (each named)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from conftest import RECIPE_BIN, clean_env, importorskip, recipe

importorskip("trl")


@pytest.mark.slow
def test_resume_continues_a_stopped_run_and_the_chain_is_one_run(tmp_path):
    runs = tmp_path / "runs"
    env = clean_env()
    proc = subprocess.Popen([*RECIPE_BIN, "run", "nemotron3_nano_tiny", "--runs-dir", str(runs)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list(runs.glob("*/output/trainer/checkpoint-*/complete")):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    (parent,) = list(runs.iterdir())
    rec = json.loads((parent / "run.json").read_text())
    assert rec["status"] == "interrupted", rec["status"]

    p = recipe("resume", str(parent), env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (child,) = [d for d in runs.iterdir() if d != parent]
    crec = json.loads((child / "run.json").read_text())
    assert crec["resume_of"]["run_id"] == rec["run_id"] and crec["status"] == "succeeded"
    assert crec["gate"]["passed"] is True
    ckpt = crec["resume_of"]["checkpoint"]
    k = int(ckpt.rsplit("-", 1)[1])
    assert "--load" in crec["argv"] and crec["argv"][crec["argv"].index("--load") + 1] == str(parent / "output"
                                                                                               / "trainer")
    # the child logged from its checkpoint's step on; the chain has every step once
    child_steps = [json.loads(line)["metrics"]["train/step"]
                   for line in (child / "events" / "actor_cell0_rank0.jsonl").read_text().splitlines()]
    assert child_steps == list(range(k, 10))
    metrics = [json.loads(line) for line in (child / "metrics.jsonl").read_text().splitlines()[1:]]
    steps = sorted(m["step"] for m in metrics if m["metric"] == "train/pg_loss")
    assert steps == list(range(10))

    c = recipe("check", str(child), env=env, cwd=tmp_path)
    assert c.returncode == 0, c.stdout[-2000:] + c.stderr[-2000:]
    r = recipe("runs", "--runs-dir", str(runs), "--json", env=env, cwd=tmp_path)
    rows = {row["run_id"]: row for row in json.loads(r.stdout)}
    assert rows[crec["run_id"]]["resume_of"] == rec["run_id"]

    # a finished run has nothing to continue
    f = recipe("resume", str(child), env=env, cwd=tmp_path)
    assert f.returncode == 6 and "only a stopped run" in f.stderr, f.stderr
    # no complete checkpoint: each incomplete one named, then refused
    for marker in (parent / "output" / "trainer").glob("checkpoint-*/complete"):
        marker.unlink()
    n = recipe("resume", str(parent), env=env, cwd=tmp_path, timeout=300)
    assert n.returncode == 6 and "no complete checkpoint" in n.stderr, n.stderr[-2000:]
    assert f"{ckpt}: incomplete checkpoint" in n.stderr
    assert len(list(runs.iterdir())) == 2  # a refused resume leaves no run directory

    # replay treats the chain as one run: rerun from the start, it equals the chain bit for bit
    r = recipe("replay", str(child), env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "IDENTICAL bit for bit" in r.stderr
    (again,) = [d for d in runs.iterdir() if d not in (parent, child)]
    assert "--load" not in json.loads((again / "run.json").read_text())["argv"]
