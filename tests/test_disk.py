"""The `disk` preflight (runner/launch/disk.py) computes what a run writes from the recipe's stated
parts ([hardware.disk]) and checks each file system for the parts written to it. Real file systems:
tmpfs mounts, whose size is only a limit (nothing is written, so a 900g mount costs nothing; root
only; CI runs as root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import required
from pydantic import ValidationError

from runner.launch.disk import check_disk, parts
from runner.recipe import Disk, load_recipe

NANO = load_recipe("nemotron3_nano")
PARAMS = 31_577_937_344   # hf_config.json through the nemotron_h family's shape


def test_the_30b_estimate_is_its_parts():
    want = parts(NANO, Path("/out"), Path("/runs"), Path("/tmp"))
    assert [(p.name.split(" (")[0], round(p.gib, 1), str(p.where)) for p in want] == [
        ("1 checkpoint(s) of 411.7 GiB", 411.7, "/out"), ("Ray object spill", 16.0, "/tmp"), ("logs", 2.0, "/runs")]
    assert f"{PARAMS:,} params x (weights_bf16 2 B + main_params_fp32 4 B + adam_exp_avg_fp32 4 B + " \
           "adam_exp_avg_sq_fp32 4 B)" in want[0].name
    assert want[0].gib == PARAMS * 14 / 2**30
    resume = parts(NANO, Path("/out"), Path("/runs"), Path("/tmp"), resume=True)
    assert resume[0].name.startswith("2 checkpoint(s)") and resume[0].gib == 2 * want[0].gib


def test_the_schema_refuses_an_unknown_key_or_a_round_number():
    with pytest.raises(ValidationError):
        Disk(checkpoint_bytes_per_param={"weights_bf16": 2}, checkpoints_kept=1, min_free_disk_gib=450)
    with pytest.raises(ValidationError):
        Disk(checkpoint_bytes_per_param={"weights_bf16": 2.5}, checkpoints_kept=1)


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0 and not required():
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], check=True)
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def check(fs: Path, ray: Path | None = None):
    return check_disk(NANO, fs / "out", fs / "runs", environ={"RECIPE_RAY_TEMP_DIR": str(ray or fs / "ray")})


def test_room_for_a_run_and_its_resume_passes(tmpfs):
    c = check(tmpfs("big", "900g"))
    assert c.status == "ok" and c.detail.startswith("429.7 GiB needed (") and "room for a resume" in c.detail


def test_room_for_the_run_but_not_its_resume_warns_naming_the_second_checkpoint(tmpfs):
    fs = tmpfs("one", "440g")
    c = check(fs)
    assert c.status == "warn", c
    assert c.detail.startswith("this run fits (429.7 GiB), a resume of it would not")
    assert f"440.0 GiB free at {fs}, need 841.5 GiB: 2 checkpoint(s) of 411.7 GiB" in c.detail


def test_too_little_for_the_run_fails_naming_every_part(tmpfs):
    fs = tmpfs("small", "420g")   # the old 450 GiB rule passed 420 + 30 for a run that needs 429.7
    c = check(fs)
    assert c.status == "fail" and "\n" not in c.detail
    assert c.detail.startswith(f"420.0 GiB free at {fs}, need 429.7 GiB: 1 checkpoint(s) of 411.7 GiB")
    assert f"Ray object spill 16.0 GiB under {fs / 'ray'}" in c.detail
    assert f"logs 2.0 GiB under {fs / 'runs'}" in c.detail
    assert "--output-dir" in c.fix


def test_each_file_system_is_held_to_its_own_parts(tmpfs):
    """The checkpoint fits the output file system; Ray's temp dir, on another, is too small for the spill."""
    out, ray = tmpfs("out", "900g"), tmpfs("ray", "10g")
    c = check(out, ray)
    assert c.status == "fail"
    assert c.detail == f"10.0 GiB free at {ray}, need 16.0 GiB: Ray object spill 16.0 GiB under {ray}"


def test_a_recipe_that_writes_no_checkpoint_needs_only_its_records(tmp_path):
    c = check_disk(load_recipe("nemotron3_nano_tiny"), tmp_path / "out", tmp_path / "runs", environ={})
    assert c.status == "ok" and "writes no checkpoints" in c.detail
