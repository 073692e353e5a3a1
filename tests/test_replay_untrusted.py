"""A received run.json is untrusted input: replay takes only the typed options and the allowlisted
numeric settings from it (REPLAYED_ENV), and refuses (exit 6) a record whose fields are not what a run
can have recorded.

Each test plants one field in a real record of the one-second echo recipe and checks either that
replay refuses naming the field, starts nothing (a planted program would leave a marker file) and
makes no replay run directory, or that it replays without taking what was planted.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, make_bundle, recipe
from test_records import env_for, only_run, run_echo


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("untrusted")
    bundle = make_bundle(tmp, ROOT / "tests" / "data" / "echo_recipe", "echo")
    runs = tmp / "runs"
    assert run_echo(bundle, runs).returncode == 0
    return bundle, only_run(runs)


def planted_program(where: Path) -> tuple[Path, Path]:
    """A program that would leave a marker file if anything ran it."""
    marker = where / "MARKER"
    prog = where / "evil"
    prog.write_text(f"#!/bin/sh\ntouch {marker}\nexec python3 \"$@\"\n")
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    return prog, marker


def plant(recorded, tmp_path, edit) -> tuple[Path, Path]:
    """A copy of the recorded run with `edit(rec, prog)` applied to its run.json; (run dir, marker)."""
    bundle, orig = recorded
    run = tmp_path / "run"
    run.mkdir(parents=True)
    for f in orig.rglob("*"):
        if f.is_file():
            (run / f.relative_to(orig)).parent.mkdir(parents=True, exist_ok=True)
            (run / f.relative_to(orig)).write_bytes(f.read_bytes())
    # the copy as if it had run here: its own locations throughout (argv, env, output dir)
    rec = json.loads((run / "run.json").read_text().replace(str(orig), str(run)))
    (tmp_path / "planted").mkdir()
    prog, marker = planted_program(tmp_path / "planted")
    edit(rec, prog)
    (run / "run.json").write_text(json.dumps(rec))
    return run, marker


def replay_planted(recorded, tmp_path, edit, *args: str) -> subprocess.CompletedProcess:
    """Replay a planted copy that must be refused: nothing runs and no replay directory is made."""
    run, marker = plant(recorded, tmp_path, edit)
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), *args, env=env_for(recorded[0]),
               cwd=recorded[0])
    assert not marker.exists(), "the planted program ran"
    assert not (tmp_path / "replays").exists(), "a replay run directory was made"
    return p


def planted_python(where: Path, marker: Path) -> None:
    """A `python3` on a planted PATH and a sitecustomize on a planted PYTHONPATH, each leaving `marker`."""
    (where / "python3").write_text(f"#!/bin/sh\ntouch {marker}\nexec /usr/bin/env -i python3 \"$@\"\n")
    (where / "python3").chmod(0o755)
    (where / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (where / "startup.sh").write_text(f"touch {marker}\n")


@pytest.mark.parametrize("var", ["RECIPE_PYTHON", "PATH", "PYTHONPATH", "LD_PRELOAD", "BASH_ENV",
                                 "RECIPE_MILES_DIR", "TEST_SLEEP"])
def test_a_planted_variable_is_not_taken_from_the_record(recorded, tmp_path, var):
    """Nothing outside REPLAYED_ENV reaches the replay: the run script's environment (which the echo
    recipe dumps) lacks it, and the planted program, module or startup file never runs."""
    def edit(rec, prog):
        planted_python(prog.parent, prog.parent / "MARKER")
        rec["environment"][var] = {"PATH": f"{prog.parent}:/usr/bin:/bin", "PYTHONPATH": str(prog.parent),
                                   "RECIPE_MILES_DIR": str(prog.parent), "BASH_ENV": str(prog.parent / "startup.sh"),
                                   "TEST_SLEEP": "600"}.get(var, str(prog))

    run, marker = plant(recorded, tmp_path, edit)
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(recorded[0]),
               cwd=recorded[0], timeout=120)
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "the planted program ran"
    replayed = only_run(tmp_path / "replays")
    seen = (replayed / "env.txt").read_text()
    assert str(tmp_path / "planted") not in seen and f"{var}=600" not in seen


def test_allowlisted_settings_are_taken_and_checked(recorded, tmp_path):
    run, _ = plant(recorded, tmp_path, lambda rec, prog: rec["environment"].update(PYTHONHASHSEED="17"))
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(recorded[0]),
               cwd=recorded[0], timeout=120)
    assert p.returncode == 0 and "re-applies from the record: PYTHONHASHSEED" in p.stderr, p.stderr
    assert "PYTHONHASHSEED=17\n" in (only_run(tmp_path / "replays") / "env.txt").read_text()
    p = replay_planted(recorded, tmp_path / "bad", lambda rec, prog: rec["environment"].update(
        PYTHONHASHSEED=f"$(touch {prog.parent / 'MARKER'})"))
    assert p.returncode == 6 and "field 'environment.PYTHONHASHSEED'" in p.stderr, p.stderr


def test_skipped_checks_come_from_the_command_line_only(recorded, tmp_path):
    run, _ = plant(recorded, tmp_path, lambda rec, prog: rec.update(preflight_skipped=["inputs", "ports"]))
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(recorded[0]),
               cwd=recorded[0], timeout=120)
    assert p.returncode == 0, p.stderr
    rec = json.loads((only_run(tmp_path / "replays") / "run.json").read_text())
    assert rec["preflight_skipped"] == [] and {"inputs", "ports"} <= {c["name"] for c in rec["preflight"]
                                                                       if c["status"] != "skipped"}
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays2"), "--skip-preflight", "ports",
               env=env_for(recorded[0]), cwd=recorded[0], timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads((only_run(tmp_path / "replays2") / "run.json").read_text())["preflight_skipped"] == ["ports"]


@pytest.mark.parametrize("field,value,named", [
    ("RECIPE_SEED", "1" * 5000, "script_env.RECIPE_SEED"),
    ("RECIPE_NUM_ROLLOUT", "3; id", "script_env.RECIPE_NUM_ROLLOUT"),
    ("RECIPE_DETERMINISTIC", None, "script_env.RECIPE_DETERMINISTIC"),
])
def test_a_malformed_option_is_one_line_exit_2(recorded, tmp_path, field, value, named):
    def edit(rec, prog):
        if value is None:
            del rec["script_env"][field]
        else:
            rec["script_env"][field] = value

    p = replay_planted(recorded, tmp_path, edit)
    assert p.returncode == 2 and f"field '{named}'" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_run_script_outside_the_bundle_is_refused(recorded, tmp_path):
    def edit(rec, prog):  # in run.json and in plan.json, which replay reads
        rec["entrypoint"] = ["bash", str(prog.parent / "run.sh")]
        plan = json.loads((Path(rec["run_dir"]) / "plan.json").read_text())
        (Path(rec["run_dir"]) / "plan.json").write_text(json.dumps({**plan, "entrypoint": rec["entrypoint"]}))

    p = replay_planted(recorded, tmp_path, edit)
    assert p.returncode == 6, p.stderr
    assert "field 'entrypoint'" in p.stderr


@pytest.mark.parametrize("name", ["../echo", "echo/../../x", "/tmp/echo", ".."])
def test_a_recipe_name_that_is_a_path_is_refused(recorded, tmp_path, name):
    p = replay_planted(recorded, tmp_path, lambda rec, prog: rec.update(recipe=name))
    assert p.returncode == 6, p.stderr
    assert "field 'recipe'" in p.stderr


def test_a_run_dir_pointing_elsewhere_is_refused(recorded, tmp_path):
    p = replay_planted(recorded, tmp_path, lambda rec, prog: rec.update(run_dir=str(prog.parent / "other")))
    assert p.returncode == 6, p.stderr
    assert "field 'run_dir'" in p.stderr


def test_model_and_data_dirs_outside_the_inputs_are_refused(recorded, tmp_path):
    def edit(rec, prog):
        rec["script_env"]["RECIPE_MODEL_DIR"] = str(prog.parent)

    p = replay_planted(recorded, tmp_path, edit)
    assert p.returncode == 6, p.stderr
    assert "field 'script_env.RECIPE_MODEL_DIR'" in p.stderr


def test_an_inputs_dir_that_is_not_here_is_refused(recorded, tmp_path):
    p = replay_planted(recorded, tmp_path, lambda rec, prog: rec.update(inputs_dir=str(prog.parent / "nowhere")))
    assert p.returncode == 6, p.stderr
    assert "field 'inputs_dir'" in p.stderr


def test_an_untouched_copy_replays_and_says_what_it_runs(recorded, tmp_path):
    bundle, orig = recorded
    p = recipe("replay", str(orig), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 0, p.stderr
    assert f"run.sh), which runs:\n  bash {bundle / 'recipes' / 'echo' / 'run.sh'}\n" in p.stderr, p.stderr


def test_the_run_directory_holds_the_frozen_plan_and_replay_compares_with_it(recorded, tmp_path):
    bundle, orig = recorded
    plan = json.loads((orig / "plan.json").read_text())
    rec = json.loads((orig / "run.json").read_text())
    assert plan["version"] == 1 and plan["argv"] == rec["argv"] and plan["env"] == rec["job_env"]
    assert (orig / "run.sh").read_text().startswith("#!/usr/bin/env bash")  # the script that ran, beside it
    assert plan["options"]["seed"] == int(rec["script_env"]["RECIPE_SEED"])
    run, marker = plant(recorded, tmp_path, lambda rec, prog: None)
    doc = json.loads((run / "plan.json").read_text().replace(str(orig), str(run)))
    doc["script_env"]["RECIPE_NUM_ROLLOUT"] = "99"
    (run / "plan.json").write_text(json.dumps(doc))
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 6 and "different launch: script env RECIPE_NUM_ROLLOUT: recorded '99'" in p.stderr, p.stderr
    (run / "plan.json").unlink()
    (run / "plan.json").symlink_to("/dev/zero")
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 2 and "plan.json: a link to /dev/zero, outside" in p.stderr, p.stderr
    (run / "plan.json").unlink()
    os.mkfifo(run / "plan.json")   # read, it would hang the replay
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 2 and "plan.json: a FIFO, not a regular file" in p.stderr, p.stderr


def test_a_refusal_quoting_the_record_prints_no_control_sequence(recorded, tmp_path):
    """A refusal names the field and its value: escaped, so a planted value cannot drive the terminal."""
    p = replay_planted(recorded, tmp_path, lambda rec, prog: rec.update(recipe="\x1b]0;pwned\x07echo"))
    assert p.returncode == 6 and "\x1b" not in p.stderr and "\\x1b]0;pwned\\x07" in p.stderr, p.stderr


# `recipe resume` shares replay's guard (runner/launch/replay.py guarded_relaunch): the same refusals.
def resume_planted(recorded, tmp_path, edit) -> subprocess.CompletedProcess:
    """Resume a planted copy that must be refused: nothing runs and no run directory is made beside it."""
    def stopped(rec, prog):
        rec["status"] = "failed"
        edit(rec, prog)

    run, marker = plant(recorded, tmp_path, stopped)
    before = sorted(tmp_path.iterdir())
    p = recipe("resume", str(run), env=env_for(recorded[0]), cwd=recorded[0])
    assert not marker.exists(), "the planted program ran"
    assert sorted(tmp_path.iterdir()) == before, "a run directory was made"
    return p


def test_resume_refuses_a_changed_recipe_naming_the_file(recorded, tmp_path):
    name_of_first = sorted(json.loads((recorded[1] / "run.json").read_text())["recipe_files"])[0]

    def edit(rec, prog):
        name = sorted(rec["recipe_files"])[0]
        rec["recipe_files"][name] = "0" * 64
        rec["recipe_digest"] = "0" * 64

    p = resume_planted(recorded, tmp_path, edit)
    assert p.returncode == 6, p.stderr
    assert "refusing to resume" in p.stderr and "changed since the run" in p.stderr and name_of_first in p.stderr


def test_resume_refuses_a_planted_field(recorded, tmp_path):
    p = resume_planted(recorded, tmp_path, lambda rec, prog: rec.update(run_dir=str(prog.parent / "other")))
    assert p.returncode == 6 and "field 'run_dir'" in p.stderr, p.stderr


def test_resume_refuses_a_run_without_a_complete_checkpoint(recorded, tmp_path):
    p = resume_planted(recorded, tmp_path, lambda rec, prog: None)
    assert p.returncode == 6 and "no complete checkpoint" in p.stderr, p.stderr


def test_resume_reads_checkpoints_only_in_the_run_directory(recorded, tmp_path):
    def edit(rec, prog):  # plan.json, which resume reads for the output dir, pointed elsewhere
        plan = json.loads((Path(rec["run_dir"]) / "plan.json").read_text())
        (Path(rec["run_dir"]) / "plan.json").write_text(json.dumps({**plan, "output_dir": str(prog.parent)}))

    p = resume_planted(recorded, tmp_path, edit)
    assert p.returncode == 6 and "refusing to resume" in p.stderr, p.stderr
    assert "is not RUN_DIR/output" in p.stderr or "RECIPE_OUTPUT_DIR" in p.stderr, p.stderr


def test_resume_refuses_a_finished_run(recorded, tmp_path):
    p = resume_planted(recorded, tmp_path, lambda rec, prog: rec.update(status="succeeded"))
    assert p.returncode == 6 and "only a stopped run" in p.stderr, p.stderr
