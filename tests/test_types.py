"""runner/ type-checks with mypy ([tool.mypy] in pyproject.toml): the framework and backend seams
are Protocols/ABCs a type checker holds, so a call that does not match a seam (an adapter method
called with an argument the base does not take) fails here, not on the first recipe that reaches it."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_mypy_finds_no_type_error_in_runner():
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_mypy_would_catch_a_call_that_does_not_match_a_seam(tmp_path):
    """The seam the review found broken: lint called adjust_model_findings(findings, argv, cfg) on an
    adapter whose base method took no cfg. A planted module calling a seam wrongly must fail."""
    planted = tmp_path / "planted.py"
    planted.write_text("from runner.frameworks.base import Framework\n"
                       "Framework().adjust_model_findings([], None, None, 'one too many')\n")
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output", str(planted)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={"MYPYPATH": str(ROOT),
                                                                         "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1 and "adjust_model_findings" in p.stdout, p.stdout + p.stderr
