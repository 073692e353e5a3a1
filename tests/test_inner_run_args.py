"""Every `recipe run` option reaches the run a wrapping backend starts inside it, for docker and Slurm.

One builder (runner/launch/backends.inner_run_options) makes the inner run's options; these tests
render the real docker command and the real sbatch script, read the script's RUN_ARGS back with
bash, and check that each option arrives (no engine or cluster needed).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.launch.backends import docker as dk
from runner.launch.backends import slurm
from runner.launch.sbatch import render
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe

IMAGE = "registry.example/miles@sha256:" + "ab" * 32
# (RunOptions given, Launch fields, words the inner run must receive)
OPTIONS = [
    ({"seed": 7}, {}, ["--seed", "7"]),
    ({"rollout_seed": 8}, {}, ["--rollout-seed", "8"]),
    ({"num_rollout": 3}, {}, ["--num-rollout", "3"]),
    ({"deterministic": True}, {}, ["--deterministic"]),
    ({"deterministic": False}, {}, ["--no-deterministic"]),
    ({"image": IMAGE}, {}, ["--image", IMAGE]),
    ({"nodes": 2}, {}, ["--nodes", "2"]),
    ({}, {"rehash": True}, ["--rehash"]),
    ({}, {"gate": False}, ["--no-gate"]),
    ({}, {"skip": {"inputs", "args"}}, ["--skip-preflight", "args", "--skip-preflight", "inputs"]),
]


def launch_for(tmp_path: Path, backend: str, cli: dict, **fields):
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    opts = RunOptions.resolve(load_recipe("nemotron3_nano"), {"inputs_dir": inputs, "output_dir": tmp_path / "out",
                                                               **cli})
    return build_launch(opts, run_id="r-1", run_dir=tmp_path / "run", backend=backend, **fields)


def sbatch_run_args(launch) -> list[str]:
    script = render(slurm.job_from_launch(launch, rt="none"))
    line = next(x for x in script.splitlines() if x.startswith("RUN_ARGS=("))
    out = subprocess.run(["bash", "-c", f"{line}\nprintf '%s\\n' \"${{RUN_ARGS[@]}}\""], capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()


def contains(words: list[str], part: list[str]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words)))


@pytest.mark.parametrize("cli,fields,want", OPTIONS, ids=[" ".join(w) for _, _, w in OPTIONS])
def test_each_option_reaches_the_docker_inner_run(tmp_path, cli, fields, want):
    argv = dk.command(launch_for(tmp_path, "docker", cli, **fields))
    inner = argv[argv.index("--entrypoint") + 3:]  # entrypoint, image, then the inner run
    assert inner[:2] == ["run", "nemotron3_nano"] and contains(inner, want), inner


@pytest.mark.parametrize("cli,fields,want", OPTIONS, ids=[" ".join(w) for _, _, w in OPTIONS])
def test_each_option_reaches_the_slurm_inner_run(tmp_path, cli, fields, want):
    assert contains(sbatch_run_args(launch_for(tmp_path, "slurm", cli, **fields)), want)


def test_without_options_neither_backend_adds_any(tmp_path):
    for words in (sbatch_run_args(launch_for(tmp_path, "slurm", {})),
                  dk.inner_args(launch_for(tmp_path, "docker", {}))):
        assert not {"--rehash", "--no-gate", "--skip-preflight", "--seed"} & set(words)


def test_outer_only_checks_stay_outside(tmp_path):
    lc = launch_for(tmp_path, "slurm", {}, skip={"slurm", "pyxis", "inputs"})
    assert sbatch_run_args(lc).count("--skip-preflight") == 1
    lc = launch_for(tmp_path, "docker", {}, skip={"docker", "inputs"})
    assert dk.inner_args(lc).count("--skip-preflight") == 1


def test_slurm_passes_the_host_model_dir(tmp_path):
    model = tmp_path / "inputs" / "m"
    assert contains(sbatch_run_args(launch_for(tmp_path, "slurm", {"model_dir": model})), ["--model-dir", str(model)])


def test_the_inner_record_is_where_each_backend_says(tmp_path):
    assert dk.inner_record(launch_for(tmp_path, "docker", {})) == tmp_path / "run" / "container" / "run.json"
    assert slurm.inner_record(launch_for(tmp_path, "slurm", {})) == tmp_path / "run" / "run.json"


def test_lint_judges_the_launchs_own_argv(tmp_path):
    """The lint preflight reads the plan the run launches, not a second rendering: an argv without
    routing replay in this launch's plan is what lint reports."""
    from runner.launch.preflight import check_lint

    lc = launch_for(tmp_path, "local", {})
    assert check_lint(lc).status == "ok"
    lc.plan.argv = [w for w in lc.plan.argv if w != "--use-rollout-routing-replay"]
    c = check_lint(lc)
    assert c.status == "fail" and "--use-rollout-routing-replay" in c.detail
