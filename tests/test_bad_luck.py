"""A runs directory that is read-only or full, found before launch or met during the run: one line
naming the directory and what was being written, a distinct exit (3 before launch), never an
internal error, and a record that cannot be finished says so. Real file systems: small tmpfs mounts
(root only; CI runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, make_bundle, required
from test_records import run_echo

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not required(), reason="mounting a tmpfs needs root")


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")


@pytest.fixture
def tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(name: str, size: str, *opts: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *opts]), "tmpfs", str(d)], check=True)
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def one_line(p: subprocess.CompletedProcess) -> str:
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    return p.stderr


def test_a_read_only_runs_directory_is_refused_before_launch(bundle, tmpfs):
    runs = tmpfs("ro", "1m", "ro")
    p = run_echo(bundle, runs)
    assert p.returncode == 3, p.stderr
    assert f"fail disk runs directory {runs}: {runs} is on a read-only file system" in " ".join(one_line(p).split())


def test_a_full_runs_directory_is_refused_before_launch(bundle, tmpfs):
    runs = tmpfs("full", "1m")
    p = run_echo(bundle, runs)
    assert p.returncode == 3, p.stderr
    text = " ".join(one_line(p).split())  # the console wraps to its width
    assert f"runs directory {runs}:" in text and "need 64 MiB" in text
    assert list(runs.iterdir()) == []


def test_a_disk_that_fills_during_the_run_is_one_line_naming_what_was_written(bundle, tmpfs):
    runs = tmpfs("filling", "70m")
    p = run_echo(bundle, runs, TEST_FILL=str(80 * 2**20))
    assert p.returncode == 1, p.stderr
    last = one_line(p).strip().splitlines()[-1]
    assert last.startswith("recipe: error: ") and "No space left on device" in last and str(runs) in last, p.stderr
    (run,) = runs.iterdir()
    rec = json.loads((run / "run.json").read_text())
    finished = rec["status"] != "running"
    assert finished or "could not write the final record" in p.stderr  # never a silent "running"
