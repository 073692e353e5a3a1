"""The real run script, run by bash in dry-run mode, against `recipe plan` and the recipe file."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from conftest import ROOT, clean_env, recipe
from conftest import plan_env as _plan_env

from runner.recipe import args_to_dict, load_recipe

SCRIPT = ROOT / "recipes" / "nemotron3_nano" / "run.sh"


def plan_env(**extra: str) -> dict[str, str]:
    return _plan_env("nemotron3_nano", **extra)


def dry_run(env: dict[str, str]) -> list[list[str]]:
    p = subprocess.run(["bash", str(SCRIPT)], env={**env, "RECIPE_DRY_RUN": "1"}, capture_output=True,
                       text=True, check=True, timeout=60)
    return [shlex.split(line[2:]) for line in p.stdout.splitlines() if line.startswith("+ ")]


def train_argv(commands: list[list[str]]) -> list[str]:
    submit = next(c for c in commands if c[:3] == ["ray", "job", "submit"])
    job = submit[submit.index("--") + 1:]
    return job[2:]  # after "python3 .../train.py"


def test_script_dry_run_equals_recipe_plan(tmp_path):
    for cell in load_recipe("nemotron3_nano").cells:
        p = recipe("plan", "nemotron3_nano", "--cell", cell, "--inputs", str(tmp_path / "in"),
                   "--run-dir", str(tmp_path / "run"), "--format", "json", env=clean_env(NCCL_NVLS_ENABLE="0"))
        assert p.returncode == 0, p.stderr
        plan = json.loads(p.stdout)
        # Run the script by hand, as a person inside the image would, with the plan's variables.
        cmds = dry_run(plan_env(NCCL_NVLS_ENABLE="0", **plan["script_env"]))
        assert cmds == plan["commands"]
        assert train_argv(cmds) == plan["argv"]


def test_dry_run_has_no_side_effects(tmp_path):
    dry_run(plan_env(RECIPE_RUN_DIR=str(tmp_path / "run"), RECIPE_OUTPUT_DIR=str(tmp_path / "out")))
    assert list(tmp_path.iterdir()) == []


def test_by_hand_without_the_recipes_values_the_script_refuses_naming_the_first():
    """The script re-defaults nothing recipe.toml states: run without them, it says which is missing."""
    p = subprocess.run(["bash", str(SCRIPT)], env={**clean_env(), "RECIPE_DRY_RUN": "1"}, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == ("recipe: error: RECIPE_MODEL_DIR is not set: `recipe run` passes it from "
                                "recipe.toml; by hand, set it")
    env = plan_env()
    env.pop("RECIPE_SEED")
    p = subprocess.run(["bash", str(SCRIPT)], env={**env, "RECIPE_DRY_RUN": "1"}, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "RECIPE_SEED is not set" in p.stderr


def test_with_the_plans_values_the_script_launches_the_default_cell():
    r = load_recipe("nemotron3_nano")
    got = args_to_dict(train_argv(dry_run(plan_env())))
    c = r.cell(None)
    assert got["--tensor-model-parallel-size"] == str(c.tp)
    assert got["--pipeline-model-parallel-size"] == str(c.pp)
    assert got["--context-parallel-size"] == str(c.cp)
    assert got["--expert-model-parallel-size"] == str(c.ep)
    assert got["--expert-tensor-parallel-size"] == str(c.etp)
    assert ("--sequence-parallel" in got) == c.sp
    assert got["--max-tokens-per-gpu"] == str(c.max_tokens_per_gpu)
    assert got["--num-rollout"] == str(r.run_defaults.num_rollout)
    assert got["--seed"] == str(r.run_defaults.seed)
    assert got["--rollout-seed"] == str(r.run_defaults.rollout_seed)
    assert ("--deterministic-mode" in got) == r.run_defaults.deterministic
    hw = r.hardware
    assert got["--actor-num-nodes"] == str(hw.nodes)
    assert got["--actor-num-gpus-per-node"] == str(hw.gpus_per_node)


def test_multi_node_counts_come_from_the_launch():
    got = args_to_dict(train_argv(dry_run(plan_env(RECIPE_NODES="2", RECIPE_GPUS_PER_NODE="8",
                                                    RECIPE_RAY_ADDRESS="10.0.0.1:6379"))))
    assert got["--actor-num-nodes"] == "2"
    assert got["--rollout-num-gpus"] == "16"
    assert got["--num-gpus-per-node"] == "8"


def test_joining_a_cluster_starts_no_ray_head():
    cmds = dry_run(plan_env(RECIPE_RAY_ADDRESS="10.0.0.1:6379", RECIPE_NODES="2"))
    assert not any("start" in c and "ray" in c for c in cmds)
    wait = next(c for c in cmds if any(w.endswith("ray_wait.py") for w in c))
    assert wait[wait.index("--address") + 1] == "10.0.0.1:6379"
    assert wait[wait.index("--gpus") + 1] == "16"
    # the job goes to that cluster's dashboard, on Ray's default port unless one is given
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    assert submit[submit.index("--address") + 1] == "http://127.0.0.1:8265"
    cmds = dry_run(plan_env(RECIPE_RAY_ADDRESS="10.0.0.1:6379", RECIPE_RAY_DASHBOARD_PORT="9000"))
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    assert submit[submit.index("--address") + 1] == "http://127.0.0.1:9000"


def test_deterministic_opt_in_sets_flags_and_env():
    cmds = dry_run(plan_env(RECIPE_DETERMINISTIC="1"))
    argv = train_argv(cmds)
    assert "--deterministic-mode" in argv and "--sglang-enable-deterministic-inference" in argv
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    env = json.loads(submit[submit.index("--runtime-env-json") + 1])["env_vars"]
    assert env["NCCL_ALGO"] == "Ring"
    assert env["NVTE_ALLOW_NONDETERMINISTIC_ALGO"] == "0"
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "--deterministic-mode" not in train_argv(dry_run(plan_env()))


def test_wandb_key_never_on_a_command_line():
    planted = "sk-test-PLANTED-0123456789"
    p = subprocess.run(["bash", str(SCRIPT)], env={**plan_env(RECIPE_WANDB_PROJECT="proj", WANDB_API_KEY=planted,
                                                               HF_TOKEN=planted), "RECIPE_DRY_RUN": "1"},
                       capture_output=True, text=True, check=True)
    assert "--use-wandb" in p.stdout
    assert planted not in p.stdout + p.stderr
    assert "--wandb-key" not in p.stdout


def test_job_env_matches_upstream_runtime_env():
    cmds = dry_run(plan_env(NCCL_NVLS_ENABLE="1", MASTER_ADDR="10.1.2.3", RECIPE_MILES_DIR="/m",
                             RECIPE_MEGATRON_DIR="/meg"))
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    env = json.loads(submit[submit.index("--runtime-env-json") + 1])["env_vars"]
    assert env == {"PYTHONPATH": "/m:/meg", "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_NVLS_ENABLE": "1",
                   "MASTER_ADDR": "10.1.2.3", "PYTHONUNBUFFERED": "1", "no_proxy": "127.0.0.1,localhost,10.1.2.3"}
    assert submit[submit.index("--") + 1:][:2] == ["python3", "/m/train.py"]


def test_script_never_kills_by_name():
    text = "\n".join(p.read_text() for p in (ROOT / "recipes").rglob("*.sh"))
    for bad in (r"\bpkill\b", r"\bkillall\b", r"\bray\s+stop(\s|$)"):
        assert not re.search(bad, text, re.M), bad
