"""`--backend auto` picks docker only when a docker daemon answers, not merely when a `docker` CLI
is on PATH; with a CLI but no daemon it picks local and the refusal says why. A fake `docker` on
PATH stands in for both cases (the real engine is tests/test_docker_backend.py's)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import clean_env, recipe

from runner.launch import backends
from runner.recipe import load_recipe

DEAD = """#!/bin/sh
# what the docker CLI does with no daemon behind its socket
if [ "$1" = version ]; then echo 'Client: Docker Engine - Community'; fi
echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2
exit 1
"""
ALIVE = """#!/bin/sh
[ "$1" = version ] && echo 27.3.1 && exit 0
exit 1
"""


def fake_docker(tmp_path: Path, body: str) -> str:
    d = tmp_path / "bin"
    d.mkdir()
    f = d / "docker"
    f.write_text(body)
    f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return f"{d}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("body, chosen", [(DEAD, "local"), (ALIVE, "docker")])
def test_auto_picks_docker_only_when_its_daemon_answers(tmp_path, monkeypatch, body, chosen):
    monkeypatch.setenv("PATH", fake_docker(tmp_path, body))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    notes: list[str] = []
    assert backends.resolve("auto", load_recipe("nemotron3_nano"), notes) == chosen
    if chosen == "local":
        assert notes == ["--backend auto chose local, not docker: the docker daemon does not answer "
                         "(Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                         "Is the docker daemon running?)"]
    else:
        assert notes == []


def test_a_refused_auto_run_says_why_docker_was_not_used(tmp_path):
    env = clean_env(PATH=fake_docker(tmp_path, DEAD), RECIPE_RUNS_DIR=str(tmp_path / "runs"))
    env.pop("SLURM_JOB_ID", None)
    p = recipe("run", "nemotron3_nano", env=env, cwd=tmp_path)
    assert p.returncode == 3, p.stderr
    assert "recipe: --backend auto chose local, not docker: the docker daemon does not answer" in p.stderr
    assert "backend local" in p.stderr
