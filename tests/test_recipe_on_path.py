"""How `recipe` gets onto PATH: `just recipe ARGS` runs any verb with the bundle's .venv, and a
bootstrap that installed something ends by saying how to type `recipe` directly."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess

import pytest
from conftest import ROOT, clean_env, required


def test_bootstraps_last_line_says_how_to_put_recipe_on_path(tmp_path):
    # a venv whose stamp is stale, with a stand-in pip, so that the bootstrap "installs" in no time
    venv = tmp_path / "my venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", "#!/bin/sh\nexit 0\n"), ("recipe", "#!/bin/sh\necho recipe-from-venv\n")):
        f = venv / "bin" / name
        f.write_text(body)
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv / "bin"}:$PATH"\n')   # as venv's own does
    (venv / ".bootstrap-stamp").write_text("stale extras=\n")
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), ""], env=clean_env(RECIPE_VENV=str(venv)),
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("recipe: ready. To type `recipe` directly: source ")
    # both ways it names work, from a shell, in a directory with a space in its name
    m = re.search(r"source (.+?)  \(or export PATH=(.+?):\$PATH;", last)
    assert m, last
    for how in (f"source {m.group(1)}", f"export PATH={m.group(2)}:$PATH"):
        out = subprocess.run(["bash", "-c", f"{how}; cd /; recipe"], capture_output=True, text=True, check=False)
        assert out.stdout == "recipe-from-venv\n", (how, out.stderr)


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
