"""`recipe exec RUN_DIR`: the job's side of a docker or Slurm run. It reads the plan the launching
`recipe run` froze (a planted one is refused), runs the in-image checks against that same plan (a
failing one stops before the script), then the script, finishing the run's one run.json.

The run directory is made the way `recipe run --backend docker` makes it (runner/launch/run.py
freeze), with a job view whose paths are this host's, so that `recipe exec` runs here for real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

from runner.checks import Check
from runner.launch import run as runflow
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.plan.spec import JobView
from runner.recipe import load_recipe
from runner.records.record import create_run_dir

TINY = "nemotron3_nano_tiny"


def frozen_run(tmp_path: Path, backend: str = "docker", host_checks: tuple[str, ...] = ("lint", "docker")) -> Path:
    """A run directory as the launching side leaves it: plan.json, run.sh and a "running" run.json."""
    recipe = load_recipe(TINY)
    run_dir = tmp_path / "runs" / "r-1"
    opts = RunOptions.resolve(recipe, {"output_dir": run_dir / "output"})
    view = JobView(inputs_dir=opts.inputs_dir, output_dir=run_dir / "output", run_dir=run_dir, bundle=ROOT)
    launch = build_launch(opts, run_id="r-1", run_dir=run_dir, backend=backend, view=view)
    create_run_dir(run_dir.parent, "r-1")
    runflow.freeze(launch, [Check(n, "ok", "on the host") for n in host_checks]).save()
    return run_dir


def recipe_exec(run_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", "exec", str(run_dir)], env=clean_env(**env),
                          cwd=run_dir.parent, capture_output=True, text=True, timeout=600)


def edit_plan(where: Path, **changes) -> None:
    path = where / "plan.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def refused(p: subprocess.CompletedProcess, words: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], p.stderr


def test_a_plan_linked_from_outside_the_run_dir_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    outside = tmp_path / "elsewhere.json"
    (run_dir / "plan.json").rename(outside)
    (run_dir / "plan.json").symlink_to(outside)
    refused(recipe_exec(run_dir), "outside")


def test_a_directory_without_a_plan_is_refused(tmp_path):
    refused(recipe_exec(tmp_path), "plan.json: no plan here")


def test_a_plan_of_another_version_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    edit_plan(run_dir, version=2)
    refused(recipe_exec(run_dir), "key 'version' 2 is not 1")


def test_a_plan_with_an_unknown_key_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    edit_plan(run_dir, shell="rm -rf /")
    refused(recipe_exec(run_dir), "has no key 'shell'")


def test_a_plan_of_another_run_dir_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    edit_plan(run_dir, run_dir=str(tmp_path / "other"))
    refused(recipe_exec(run_dir), "key 'run_dir'")


def test_a_run_that_was_not_begun_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    (run_dir / "run.json").unlink()
    refused(recipe_exec(run_dir), "no running or submitted record")


def test_a_submitted_run_becomes_this_process_run_when_its_job_starts(tmp_path, monkeypatch):
    """`recipe sbatch --submit` leaves "submitted" with no pid; the job's `recipe exec` makes the record
    its own (running, its pid, host and Slurm job id) before anything else, then finishes it."""
    monkeypatch.setenv("RECIPE_PYTHON", "/nonexistent/python3")   # stops at the in-image checks: quick
    run_dir = frozen_run(tmp_path, backend="slurm", host_checks=())
    rec = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**rec, "status": "submitted", "pid": None, "hostname": "login"}))
    p = recipe_exec(run_dir, SLURM_JOB_ID="4242")
    rec = json.loads((run_dir / "run.json").read_text())
    assert p.returncode == 3 and rec["status"] == "preflight-failed", p.stderr
    assert rec["slurm_job_id"] == "4242" and rec["hostname"] == socket.gethostname()
    assert isinstance(rec["pid"], int) and rec["pid"] != os.getpid()


def test_a_failing_in_image_check_stops_before_the_script(tmp_path, monkeypatch):
    # The plan names an interpreter the job's machine lacks: the packages check, asked of that same
    # plan inside, fails, and run.sh never starts.
    monkeypatch.setenv("RECIPE_PYTHON", "/nonexistent/python3")
    run_dir = frozen_run(tmp_path)
    p = recipe_exec(run_dir)
    assert p.returncode == 3, p.stderr
    assert not (run_dir / "logs" / "run.log").exists()
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "preflight-failed" and rec["exit_code"] == 3
    checks = {c["name"]: c["status"] for c in rec["preflight"]}
    assert checks["packages"] == "fail" and "/nonexistent/python3" in json.dumps(rec["preflight"])
    # the host's checks stay, and those already run on the host are not asked again inside
    assert [c["name"] for c in rec["preflight"]][:2] == ["lint", "docker"]
    assert [c["name"] for c in rec["preflight"]].count("lint") == 1 and "inputs" not in checks


@pytest.mark.slow
def test_exec_carries_out_the_plan_into_the_one_record(tmp_path):
    run_dir = frozen_run(tmp_path)
    before = json.loads((run_dir / "run.json").read_text())
    p = recipe_exec(run_dir)
    assert p.returncode == 0, p.stderr[-4000:]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "succeeded" and rec["exit_code"] == 0 and rec["gate"]["passed"] is True
    # the same record the launching side began: its host, pid and checks, then the in-image ones
    assert rec["started_at"] == before["started_at"] and rec["pid"] == before["pid"]
    assert [c["name"] for c in rec["preflight"]] == ["lint", "docker", "image", "shm", "ports", "args", "model",
                                                   "packages"]
    assert rec["packages"]
    assert sorted(os.listdir(run_dir)) == sorted(
        {"plan.json", "run.sh", "run.json", "logs", "events", "output", "metrics.jsonl", "gate.json"}
        | {n for n in os.listdir(run_dir) if n.startswith(".claim")})


def test_replay_compares_a_docker_run_with_its_plan_across_the_mounts(tmp_path):
    """A docker run's plan.json holds the container's paths (/recipe/...); replay, which renders the
    record's options again on this host, finds the same launch, and a changed value still differs."""
    from runner.launch import replay
    from runner.launch.backends import docker as dk

    recipe = load_recipe(TINY)
    run_dir = tmp_path / "runs" / "d-1"
    opts = RunOptions.resolve(recipe, {})
    launch = build_launch(opts, run_id="d-1", run_dir=run_dir, backend="docker", view=dk.job_view("d-1"))
    create_run_dir(run_dir.parent, "d-1")
    runflow.freeze(launch, []).save()
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["run_dir"] == "/recipe/run/d-1" and "/recipe/inputs/model" in plan["argv"]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["run_dir"] == str(run_dir.resolve()) and replay.untrusted_fields(rec, run_dir.resolve()) == []
    again = replay.relaunch(rec, recipe, "r-2", tmp_path / "runs" / "r-2", {}, set())
    recorded = replay.recorded_plan(run_dir, rec)
    assert replay.entrypoint_differences(recorded, again) == []
    assert replay.launch_differences(recorded, again) == []
    plan["argv"][plan["argv"].index("--lr") + 1] = "9"
    (run_dir / "plan.json").write_text(json.dumps(plan))
    assert replay.launch_differences(replay.recorded_plan(run_dir, rec), again)


def test_a_run_script_that_is_not_the_plans_is_refused(tmp_path):
    run_dir = frozen_run(tmp_path)
    script = run_dir / "run.sh"
    script.write_text(script.read_text().replace("--num-rollout", "--num-rollout 1000 --x"))
    refused(recipe_exec(run_dir), "not the script of this run's plan.json")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # the launching side finishes it


def test_a_plan_value_of_the_wrong_type_is_refused_not_coerced(tmp_path):
    run_dir = frozen_run(tmp_path)
    edit_plan(run_dir, nodes="1")
    refused(recipe_exec(run_dir), "key 'nodes'")
