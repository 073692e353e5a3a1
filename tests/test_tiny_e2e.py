"""The CPU smoke end to end through the user's path: `recipe run nemotron3_nano_tiny`, its gate,
its run record, then `recipe replay` reproducing every metric bit for bit."""

from __future__ import annotations

import json

import pytest
from conftest import clean_env, importorskip, recipe

importorskip("trl")


@pytest.mark.slow
def test_tiny_recipe_runs_passes_its_gate_and_replays_bitwise(tmp_path):
    runs = tmp_path / "runs"
    p = recipe("run", "nemotron3_nano_tiny", "--runs-dir", str(runs), env=clean_env(), cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (orig,) = list(runs.iterdir())
    rec = json.loads((orig / "run.json").read_text())
    assert rec["status"] == "succeeded" and rec["gate"]["passed"] is True
    assert rec["determinism"] == "bitwise"
    assert rec["inputs_verification"]["status"] == "ok"
    assert "--use-rollout-routing-replay" in rec["argv"]
    assert (orig / "metrics.jsonl").is_file() and (orig / "events").is_dir()
    # The console (a pipe here): the runner's lines, a line per step, the verdict, no colour; Ray's
    # banners and the trainer's chatter (TRL's per-step dicts, its tqdm bar, transformers' fallback
    # notices) only in logs/run.log (colour codes stripped there).
    console = p.stdout + p.stderr
    log = (orig / "logs" / "run.log").read_text()
    assert "Ray runtime started" in log and "submitted successfully" in log and "\x1b" not in log
    assert "Ray runtime started" not in console and "submitted successfully" not in console
    assert "\x1b" not in console
    assert "recipe: step 10/10, elapsed" in p.stderr and "recipe: step 1/10, elapsed" in p.stderr
    for chatter in ("'grad_norm'", "it/s]", "falling back to its reference PyTorch implementation"):
        assert chatter in log and chatter not in console, chatter

    r = recipe("replay", str(orig), env=clean_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "IDENTICAL bit for bit" in r.stderr
    (new,) = [d for d in runs.iterdir() if d != orig]
    rep = json.loads((new / "replay.json").read_text())
    assert rep["identical"] and rep["compared_values"] > 100
    assert all(m.startswith("perf/") for m in rep["excluded_metrics"])
