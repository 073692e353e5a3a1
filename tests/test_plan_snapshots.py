"""Snapshot of the rendered launch for every cell of every recipe.

A change to a recipe's launch shows up here as a one-line diff per changed flag. After an
intended change, regenerate with `just snapshots` (UPDATE_SNAPSHOTS=1) and commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.plan.render import render_plan
from runner.plan.spec import argv_lines
from runner.recipe import list_recipes, load_recipe

SNAP = Path(__file__).parent / "snapshots"
FIXED = {"inputs_dir": Path("/inputs"), "output_dir": Path("/output"), "run_dir": Path("/runs/snapshot"),
         "run_id": "snapshot"}


def render_snapshot(name: str, cell: str) -> str:
    p = render_plan(load_recipe(name), cell, **FIXED)
    lines = [f"# recipe plan {name} --cell {cell} --inputs /inputs --output-dir /output --run-dir /runs/snapshot",
             "# regenerate after an intended change: just snapshots", "[entrypoint]", " ".join(p.entrypoint),
             "[job env]"]
    lines += [f"{k}={v}" for k, v in p.job_env.items()]
    lines += ["[argv]", *argv_lines(p.argv)]
    # A recipe shipping its own entry point names it by absolute path: keep snapshots checkout-independent.
    return ("\n".join(lines) + "\n").replace(str(SNAP.parent.parent), "<bundle>")


CASES = [(n, c) for n in list_recipes() for c in load_recipe(n).cells]


@pytest.mark.parametrize("name,cell", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_plan_matches_snapshot(name, cell, monkeypatch):
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")  # the NVLink probe result would vary by host
    for var in ("PYTHONPATH", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_DEBUG_FILE"):
        monkeypatch.delenv(var, raising=False)  # the caller's, forwarded into the job env when set
    got = render_snapshot(name, cell)
    f = SNAP / name / f"{cell}.args"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(got)
    assert f.is_file(), f"no snapshot {f}; create it with `just snapshots`"
    assert got == f.read_text(), f"launch of {name}/{cell} changed; if intended, run `just snapshots`"


def test_every_cell_has_a_snapshot_and_no_stale_ones():
    want = {f"{n}/{c}.args" for n, c in CASES}
    have = {str(p.relative_to(SNAP)) for p in SNAP.rglob("*.args")}
    assert have == want
