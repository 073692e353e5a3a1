"""`recipe runs` and `recipe logs`: run directories as `recipe run` leaves them (run.json, logs/run.log),
listed and followed by the real CLI; a stale "running" record must not be followed forever."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.errors import EXIT_MISSING


def make_run(runs: Path, name: str, **fields) -> Path:
    d = runs / name
    (d / "logs").mkdir(parents=True)
    rec = {"schema": 1, "status": "succeeded", "recipe": "nemotron3_nano", "run_id": name, "cell": "default",
           "started_at": f"2026-08-21T{name[:2]}:00:00+00:00", "hostname": socket.gethostname(), "pid": 1,
           "gate": {"status": "passed", "passed": True, "counts": {"pass": 20}}, **fields}
    (d / "run.json").write_text(json.dumps(rec))
    (d / "logs" / "run.log").write_text(f"log of {name}\n")
    return d


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture
def runs(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "bundle"
    shutil.copytree(ROOT / "recipes", root / "recipes", ignore=shutil.ignore_patterns("reference_metrics.jsonl"))
    # the reference was blessed from run 10-good
    (root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl").write_text(json.dumps(
        {"schema": 1, "kind": "recipe-metrics", "provenance": {"run_id": "10-good"}}) + "\n")
    runs = tmp_path / "runs"
    make_run(runs, "10-good", ended_at="2026-08-21T10:00:35+00:00", script_env={"RECIPE_SEED": "7"},
             replay_of={"run_id": "20260821T09-nemotron3_nano-default-b0a0b0"})
    make_run(runs, "11-gatefail", status="gate-failed",
             gate={"status": "failed", "passed": False, "counts": {"pass": 18, "fail": 2}})
    make_run(runs, "12-stale", status="running", pid=dead_pid(), gate=None, cell="ep4")
    make_run(runs, "13-tiny", recipe="nemotron3_nano_tiny", cell="cpu")
    (make_run(runs, "09-broken") / "run.json").write_text("{not json")
    (runs / "not-a-run").mkdir()
    return runs, clean_env(RECIPE_BUNDLE_ROOT=str(root))


def test_runs_lists_id_time_recipe_status_gate_duration_and_options(runs):
    runs_dir, env = runs
    # wide enough for one line per run (narrower, cells wrap in their columns: test_received_runs.py)
    p = recipe("runs", "--runs-dir", str(runs_dir), env={**env, "COLUMNS": "300"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["id", "started", "recipe", "status", "gate", "took", "options", "of"]
    rows = {line.split()[0].rstrip("*"): line for line in lines[1:]}
    assert set(rows) == {"broken", "good", "gatefail", "stale", "tiny"}
    assert rows["good"].split() == ["good*", "08-21", "10:00", "nemotron3_nano", "succeeded", "passed", "0:35",
                                    "seed=7", "b0a0b0"]  # * blessed; options that differ; the run it replays
    assert "gate-failed" in rows["gatefail"] and "failed (2 of 20 rules)" in rows["gatefail"]
    assert "interrupted (stale)" in rows["stale"] and "cell=ep4" in rows["stale"]
    assert not rows["tiny"].startswith("tiny*") and "nemotron3_nano_tiny" in rows["tiny"]
    assert "unreadable" in rows["broken"] and "not valid JSON" in rows["broken"]
    # newest last, by start time; a record without one first
    assert [line.split()[0].rstrip("*") for line in lines[1:]] == ["broken", "good", "gatefail", "stale", "tiny"]


def test_runs_fits_80_columns_without_folding_a_word():
    from runner.commands.runs import format_rows

    rows = [{"run": f"20261207T1412{i}Z-nemotron3_nano_tiny-cpu-c4dc{i}e", "run_id": None,
             "started_at": f"2026-12-07T14:1{i}:53+00:00", "recipe": "nemotron3_nano_tiny", "cell": "cpu",
             "status": "succeeded", "gate": "passed", "blessed": i == 0, "took": "0:34",
             "options": "seed=7 steps=3" if i == 1 else "", "replay_of": "x-c4dc0e" if i == 2 else None}
            for i in range(3)]
    text = format_rows(rows, 80)
    assert max(map(len, text.splitlines())) <= 80
    for word in ("nemotron3_nano_tiny", "succeeded", "passed", "c4dc0e*", "12-07 14:10", "seed=7", "steps=3"):
        assert word in text, text


def test_runs_json_and_recipe_filter_and_runs_dir_from_the_environment(runs):
    runs_dir, env = runs
    p = recipe("runs", "--json", "--recipe", "nemotron3_nano", env={**env, "RECIPE_RUNS_DIR": str(runs_dir)})
    assert p.returncode == 0, p.stderr
    d = {r["run"]: r for r in json.loads(p.stdout)}
    assert set(d) == {"10-good", "11-gatefail", "12-stale"}
    assert d["10-good"]["blessed"] is True and d["11-gatefail"]["blessed"] is False
    assert d["12-stale"]["status"] == "interrupted (stale)" and d["12-stale"]["gate"] == "-"
    assert d["10-good"]["run_dir"] == str(runs_dir / "10-good")


def test_runs_of_an_empty_or_absent_runs_dir(tmp_path):
    p = recipe("runs", "--runs-dir", str(tmp_path / "none"))
    assert p.returncode == 0 and p.stdout == "" and "no runs in" in p.stderr
    assert json.loads(recipe("runs", "--runs-dir", str(tmp_path / "none"), "--json").stdout) == []


def test_logs_by_directory_or_by_name(runs):
    runs_dir, env = runs
    assert recipe("logs", str(runs_dir / "10-good"), env=env).stdout == "log of 10-good\n"
    p = recipe("logs", "11-gatefail", "--runs-dir", str(runs_dir), env=env)
    assert p.returncode == 0 and p.stdout == "log of 11-gatefail\n"
    p = recipe("logs", "no-such-run", "--runs-dir", str(runs_dir), env=env)
    assert p.returncode == EXIT_MISSING and p.stderr.count("\n") == 1 and "recipe runs" in p.stderr


def test_a_submitted_record_is_listed_as_submitted_never_stale(runs):
    """`recipe sbatch --submit` writes "submitted" with no pid (its job has not started): not stale,
    whatever runs or ran on this host; follow waits for it (the job's `recipe exec` makes it running)."""
    runs_dir, env = runs
    make_run(runs_dir, "14-queued", status="submitted", pid=None, gate=None)
    p = recipe("runs", "--runs-dir", str(runs_dir), env={**env, "COLUMNS": "300"})
    [line] = [x for x in p.stdout.splitlines() if x.startswith("queued")]   # the id column: the last word
    assert p.returncode == 0 and "submitted" in line and "stale" not in line, p.stdout
    with pytest.raises(subprocess.TimeoutExpired):   # still waiting: not a verdict on a job yet to run
        recipe("logs", "--follow", str(runs_dir / "14-queued"), env=env, timeout=8)


def test_follow_of_a_stale_running_record_ends_at_once(runs):
    runs_dir, env = runs
    t0 = time.monotonic()
    p = recipe("logs", "--follow", str(runs_dir / "12-stale"), env=env, timeout=30)
    assert p.returncode == 130 and p.stdout == "log of 12-stale\n"   # killed without a verdict: interrupted
    assert p.stderr == "recipe: run 12-stale interrupted (stale); gate -; exit 130\n"
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize(("fields", "code", "says"), [
    ({"status": "gate-failed", "exit_code": 1,
      "gate": {"status": "failed", "passed": False, "counts": {"pass": 18, "fail": 2}}}, 1,
     "run 30-end gate-failed; gate failed (2 of 20 rules); exit 1"),
    ({"status": "failed", "exit_code": 5, "error": "x.jsonl:1: not a JSON event line"}, 5,
     "run 30-end failed; gate passed; exit 5 (x.jsonl:1: not a JSON event line)"),
    ({"status": "succeeded", "exit_code": 0}, 0, "run 30-end succeeded; gate passed; exit 0"),
    ({"status": "failed", "exit_code": 77}, 1, "exit 1"),   # a code no run exits with is not passed on
])
def test_follow_ends_on_the_runs_verdict_and_exit_code(tmp_path, fields, code, says):
    d = make_run(tmp_path / "runs", "30-end", **fields)
    p = recipe("logs", "--follow", str(d), timeout=30)
    assert p.returncode == code and p.stdout == "log of 30-end\n"
    assert says in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert recipe("logs", str(d)).returncode == 0   # without --follow: the log, and 0


def test_follow_prints_what_a_live_run_writes_until_its_record_leaves_running(tmp_path):
    d = make_run(tmp_path / "runs", "20-live", status="running", pid=os.getpid(), gate=None)
    log = d / "logs" / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "logs", "-f", str(d)], env=clean_env(),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "log of 20-live\n"
        with open(log, "a") as f:
            f.write("step 1 of 3\n")
        assert proc.stdout.readline() == "step 1 of 3\n"
        time.sleep(1.5)
        assert proc.poll() is None, "stopped following a run that is still running"
        with open(log, "a") as f:
            f.write("done\n")
        rec = json.loads((d / "run.json").read_text())
        (d / "run.json.tmp").write_text(json.dumps({**rec, "status": "succeeded"}))
        (d / "run.json.tmp").replace(d / "run.json")          # as RunRecord.save does: atomically
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert out == "done\n" and "run 20-live succeeded" in err


def test_runs_whose_stdout_closes_exits_quietly(runs):
    runs_dir, env = runs
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "runner.cli", "runs", "--runs-dir", str(runs_dir)], stdout=w,
                           stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (141, "")


def test_a_status_this_runner_never_writes_is_data_not_a_crash(runs):
    """run.json is data: a status outside RunStatus (an older runner's word) is shown as it is and
    acted on as no status at all (not running, so never followed or called stale)."""
    from runner.records.record import RunStatus, is_stale, status_of

    runs_dir, env = runs
    make_run(runs_dir, "14-odd", status="queued-elsewhere", pid=dead_pid())
    p = recipe("runs", "--runs-dir", str(runs_dir), "--json", env=env)
    assert p.returncode == 0, p.stderr
    d = {r["run"]: r for r in json.loads(p.stdout)}
    assert d["14-odd"]["status"] == "queued-elsewhere" and d["14-odd"]["gate"] == "passed"
    assert status_of({"status": "running"}) is RunStatus.RUNNING and status_of(None) is None
    assert status_of({"status": "queued-elsewhere"}) is None and status_of({"status": ["running"]}) is None
    assert not is_stale({"status": ["running"], "hostname": socket.gethostname(), "pid": dead_pid()})
    p = recipe("logs", "--follow", str(runs_dir / "14-odd"), env=env, timeout=30)
    # not followed (it is not "running"), and its verdict is not made up: unknown, exit 1
    assert p.returncode == 1 and p.stdout == "log of 14-odd\n"
    assert "does not write; its verdict is unknown" in p.stderr
