"""The runner starts with only click (the miles base image under pyxis has click through Ray, and
may lack rich): every verb that needs no optional part works, and rich's progress bar falls back to
plain lines."""

from __future__ import annotations

import contextlib
import io
import sys

import pytest
from fixtures_minimal import base_install_fixture, cli  # noqa: F401


@pytest.mark.parametrize("args,code,out", [
    (("--help",), 0, "Launch pinned"),
    (("list",), 0, "nemotron3_nano_tiny"),
    (("show", "nemotron3_nano"), 0, "tp2_ep4_sp"),
    (("plan", "nemotron3_nano"), 0, "python3 /root/miles/train.py"),
    (("plan", "nemotron3_nano", "--backend", "docker"), 0, "recipe-bundle-auto:"),
    (("lint", "nemotron3_nano"), 0, "recipe.miles_router"),
    (("verify", "nemotron3_nano_tiny"), 0, "OK"),
    (("doctor",), 3, "NOT OK"),
    (("sbatch", "nemotron3_nano", "--nodes", "1"), 0, "#SBATCH"),
])
def test_verbs_run_on_click_alone(base_install, tmp_path, args, code, out):
    p = cli(base_install, *args, cwd=tmp_path)
    assert p.returncode == code, p.stderr[-2000:]
    assert out in p.stdout + p.stderr
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr


def test_run_dry_run_on_click_alone_reaches_preflight(base_install, tmp_path):
    p = cli(base_install, "run", "nemotron3_nano", "--backend", "local", "--dry-run", cwd=tmp_path)
    assert p.returncode == 3, p.stderr   # as the run would: the image check fails here
    assert "preflight:" in p.stderr and "fail  image" in p.stderr and "args" in p.stderr
    assert "ray job submit" in p.stdout


def test_progress_falls_back_to_plain_lines_without_rich(monkeypatch):
    from runner.commands import inputs

    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich...` now raises ImportError
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    err = io.StringIO()
    err.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", err)
    with contextlib.ExitStack() as stack:
        advance = stack.enter_context(inputs.progress_bar("model.safetensors", 3000))
        advance(1000)
        advance(2000)
    assert err.getvalue().strip().splitlines()[-1] == "model.safetensors: 3.0 kB done"
