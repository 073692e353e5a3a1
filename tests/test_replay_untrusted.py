"""A received run.json is untrusted input: replay refuses (exit 6) a record that would choose what runs.

Each test plants one field in a real record of the one-second echo recipe and checks that replay
refuses naming the field, starts nothing (a planted program would leave a marker file) and makes
no replay run directory.
"""

from __future__ import annotations

import json
import stat
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


def replay_planted(recorded, tmp_path, edit) -> tuple:
    bundle, orig = recorded
    run = tmp_path / "run"
    run.mkdir()
    for f in orig.rglob("*"):
        if f.is_file():
            (run / f.relative_to(orig)).parent.mkdir(parents=True, exist_ok=True)
            (run / f.relative_to(orig)).write_bytes(f.read_bytes())
    rec = json.loads((run / "run.json").read_text())
    rec["run_dir"] = str(run)
    prog, marker = planted_program(tmp_path)
    edit(rec, prog)
    (run / "run.json").write_text(json.dumps(rec))
    p = recipe("replay", str(run), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
    assert not marker.exists(), "the planted program ran"
    assert not (tmp_path / "replays").exists(), "a replay run directory was made"
    return p


@pytest.mark.parametrize("var", ["RECIPE_PYTHON", "PATH", "PYTHONPATH", "LD_PRELOAD", "BASH_ENV"])
def test_a_planted_program_variable_is_refused_naming_it(recorded, tmp_path, var):
    def edit(rec, prog):
        rec["environment"][var] = str(prog) if var in ("RECIPE_PYTHON", "LD_PRELOAD", "BASH_ENV") \
            else str(prog.parent)

    p = replay_planted(recorded, tmp_path, edit)
    assert p.returncode == 6, p.stderr
    assert f"'environment.{var}'" in p.stderr and "Traceback" not in p.stderr


def test_a_run_script_outside_the_bundle_is_refused(recorded, tmp_path):
    def edit(rec, prog):
        rec["entrypoint"] = ["bash", str(prog.parent / "run.sh")]

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
    assert f"it will run {bundle / 'recipes' / 'echo' / 'run.sh'}, which runs:\n  python3 train.py" in p.stderr
