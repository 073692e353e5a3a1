"""The `packages` preflight check: a recipe whose job needs packages (the tiny one: torch, TRL, Ray)
has them checked for the interpreter that will run the job, before anything starts. With only the
base install, `recipe run` and `recipe replay` of the tiny recipe stop in preflight (exit 3) naming
what is missing, for which interpreter, and the command that installs it; they used to die inside
the run script ("setsid: failed to execute ray")."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT
from fixtures_minimal import base_install_fixture, cli  # noqa: F401

from runner.frameworks import packages
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe


def tiny_launch(run_dir, run_id="r"):
    return build_launch(RunOptions.resolve(load_recipe("nemotron3_nano_tiny")), run_id=run_id, run_dir=run_dir,
                        backend="local")


TINY_EXTRA = {"torch", "transformers", "trl", "ray", "numpy", "datasets", "safetensors", "tokenizers"}


def test_run_with_the_base_install_stops_in_preflight_naming_packages_interpreter_and_fix(base_install, tmp_path):
    p = cli(base_install, "run", "nemotron3_nano_tiny", "--backend", "local", "--runs-dir", str(tmp_path / "runs"),
            cwd=tmp_path)
    assert p.returncode == 3, p.stderr
    line = next(ln for ln in p.stderr.splitlines() if "fail  packages" in ln)
    interp = str(Path(base_install["python"]).parent / "python3")
    assert "not on PATH: ray" in line
    assert f"{interp} lacks " in line and all(n in line for n in ("torch", "trl", "ray", "transformers"))
    assert "just run nemotron3_nano_tiny" in p.stderr and f"{interp} -m pip install '{ROOT}[tiny]'" in p.stderr
    assert "setsid" not in p.stderr.replace("setsid ray start", "")  # nothing was executed
    assert not (tmp_path / "runs").exists()  # stopped before a run directory was made


def test_replay_of_a_tiny_run_with_the_base_install_stops_in_preflight(base_install, tmp_path):
    from runner.launch.run import provenance
    from runner.records.record import RunRecord

    run_dir = tmp_path / "runs" / "orig"
    lc = tiny_launch(run_dir, "orig")
    run_dir.mkdir(parents=True)
    RunRecord.running(run_dir, **provenance(lc, [])).finish("succeeded", 0)  # finish saves it
    p = cli(base_install, "replay", str(run_dir), cwd=tmp_path)
    assert p.returncode == 3, p.stderr
    assert "fail  packages" in p.stderr and "lacks" in p.stderr and "failed to execute" not in p.stderr
    assert sorted(x.name for x in (tmp_path / "runs").iterdir()) == ["orig"]


def test_with_the_extra_installed_the_check_passes_and_records_versions(tmp_path):
    lc = tiny_launch(tmp_path / "run")
    c = packages.check_packages(lc.recipe, lc.plan)
    assert c.status == "ok", c.detail
    assert set(c.data["found"]) == TINY_EXTRA and all(c.data["found"].values())


def test_a_pin_the_interpreter_does_not_meet_is_named(tmp_path, monkeypatch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace('"torch==2.13.0"', '"torch==1.0.0"'))
    monkeypatch.setattr(packages, "bundle_root", lambda: tmp_path)
    lc = tiny_launch(tmp_path / "run")
    c = packages.check_packages(lc.recipe, lc.plan)
    assert c.status == "fail" and "(recipe pins ==1.0.0)" in c.detail and "torch 2.13.0" in c.detail


def test_extras_are_read_from_pyproject():
    got = packages.extra_requirements(["tiny"], ROOT / "pyproject.toml")
    assert set(got) == TINY_EXTRA and got["torch"] == "2.13.0" and got["ray"] is None


def test_programs_look_through_setsid():
    assert packages.programs([["setsid", "ray", "start"], ["python3", "x.py"], ["ray", "job"], ["/bin/true"]]) == \
        ["ray", "python3"]


def test_recipe_without_host_extras_checks_programs_only(tmp_path):
    lc = build_launch(RunOptions.resolve(load_recipe("nemotron3_nano"), {"inputs_dir": tmp_path}), run_id="r",
                      run_dir=tmp_path / "run", backend="local")
    c = packages.check_packages(lc.recipe, lc.plan)
    assert "found" not in c.data and c.data["extras"] == []
    assert json.dumps(c.as_dict())  # recordable
