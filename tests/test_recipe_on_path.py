"""How `recipe` gets onto PATH: `just recipe ARGS` runs any verb with the bundle's .venv, and a
bootstrap that installed something ends by saying how to type `recipe` directly."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

import pytest
from conftest import ROOT, clean_env, required


def fake_venv(venv):
    """A venv whose stamp is stale, with a stand-in python, so that the bootstrap "installs" in no time."""
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", "#!/bin/sh\nexit 0\n"), ("recipe", "#!/bin/sh\necho recipe-from-venv\n")):
        f = venv / "bin" / name
        f.write_text(body)
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv / "bin"}:$PATH"\n')   # as venv's own does
    (venv / ".bootstrap-stamp").write_text("stale extras=\n")


def test_bootstraps_last_line_says_how_to_put_recipe_on_path(tmp_path):
    venv = tmp_path / "my venv"
    fake_venv(venv)
    home = tmp_path / "home"
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), ""], capture_output=True, text=True, timeout=60,
                       env=clean_env(RECIPE_VENV=str(venv), RECIPE_INSTALLER="pip", HOME=str(home)), check=False)
    assert not home.exists(), "a venv other than the checkout's .venv is linked nowhere unless asked"
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("recipe: ready. To type `recipe` directly: source ")
    # both ways it names work, from a shell, in a directory with a space in its name
    m = re.search(r"source (.+?)  \(or export PATH=(.+?):\$PATH;", last)
    assert m, last
    for how in (f"source {m.group(1)}", f"export PATH={m.group(2)}:$PATH"):
        out = subprocess.run(["bash", "-c", f"{how}; cd /; recipe"], capture_output=True, text=True, check=False)
        assert out.stdout == "recipe-from-venv\n", (how, out.stderr)


def test_bootstrap_links_recipe_into_the_link_dir_for_a_new_shell(tmp_path):
    """As pipx and uv do: a `recipe` link in ~/.local/bin (here RECIPE_LINK_DIR), which a new shell with
    that directory on PATH finds; the last line says whether it is on PATH and how to add it."""
    venv, links = tmp_path / "venv", tmp_path / "local bin"
    fake_venv(venv)

    def bootstrap(path: str) -> str:
        (venv / ".bootstrap-stamp").write_text("stale extras=\n")
        p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), ""], capture_output=True, text=True,
                           env=clean_env(RECIPE_VENV=str(venv), RECIPE_INSTALLER="pip", RECIPE_LINK_DIR=str(links),
                                         PATH=path), timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        return p.stderr.strip().splitlines()[-1]

    last = bootstrap(os.environ["PATH"])
    assert "is not on your PATH: add it once with" in last and ">> ~/.bashrc" in last, last
    out = subprocess.run(["bash", "-c", "cd /; recipe"], capture_output=True, text=True, check=False,
                         env={**os.environ, "PATH": f"{links}:{os.environ['PATH']}"})
    assert out.stdout == "recipe-from-venv\n", out.stderr
    last = bootstrap(f"{links}:{os.environ['PATH']}")
    assert last.startswith("recipe: ready. `recipe` is on your PATH"), last
    # a `recipe` there that is not a link is someone else's: left alone, and said so
    (links / "recipe").unlink()
    (links / "recipe").write_text("mine\n")
    (venv / ".bootstrap-stamp").write_text("stale extras=\n")
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), ""], capture_output=True, text=True, timeout=60,
                       env=clean_env(RECIPE_VENV=str(venv), RECIPE_INSTALLER="pip", RECIPE_LINK_DIR=str(links)))
    assert (links / "recipe").read_text() == "mine\n" and "is not a link; left as it is" in p.stderr


def test_just_recipe_runs_any_verb():
    just = shutil.which("just")
    if just is None:
        if required():
            pytest.fail("CI=true but `just` is not on PATH")
        pytest.skip("no `just` on PATH (ci/just installs it)")
    if not (ROOT / ".venv" / "bin" / "recipe").exists():
        pytest.skip("no bootstrapped .venv in this checkout")
    env = clean_env()
    p = subprocess.run([just, "--justfile", str(ROOT / "Justfile"), "recipe", "list", "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert '"name": "nemotron3_nano_tiny"' in p.stdout
