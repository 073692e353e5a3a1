"""The 30B recipe's launch as the runner renders it (runner/frameworks/miles.py) and as its frozen
run.sh carries it out by hand: the same argv, the job environment upstream's launcher gives, and
nothing secret or killed by name."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from conftest import ROOT, clean_env, recipe

from runner.plan.options import RunOptions
from runner.plan.render import plan_for
from runner.plan.script import render_script
from runner.recipe import args_to_dict, load_recipe

NANO = load_recipe("nemotron3_nano")
SCRIPT = ROOT / "recipes" / "nemotron3_nano" / "run.sh"


def by_hand(script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess:
    """The frozen script as a person inside the image runs it, in dry-run mode (commands printed)."""
    return subprocess.run(["bash", str(script)], env=clean_env(RECIPE_DRY_RUN="1", **env), capture_output=True,
                          text=True, timeout=60)


def commands(p: subprocess.CompletedProcess) -> list[list[str]]:
    assert p.returncode == 0, p.stderr
    return [shlex.split(line[2:]) for line in p.stdout.splitlines() if line.startswith("+ ")]


def submitted(cmds: list[list[str]]) -> list[str]:
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    return submit[submit.index("--") + 1:]


def plan(environ: dict[str, str] | None = None, **cli):
    opts = RunOptions.resolve(NANO, {"inputs_dir": Path("/in"), **cli})
    return plan_for(opts, run_dir=Path("/run"), run_id="x", environ={"NCCL_NVLS_ENABLE": "0", **(environ or {})})


def test_the_frozen_script_by_hand_launches_what_the_runner_renders(tmp_path):
    for name in ("nemotron3_nano", "nemotron3_nano_4b"):
        p = recipe("plan", name, "--inputs", "/in", "--run-dir", str(tmp_path / "run"), "--format", "json",
                   env=clean_env(NCCL_NVLS_ENABLE="0"))
        assert p.returncode == 0, p.stderr
        want = json.loads(p.stdout)
        cmds = commands(by_hand(ROOT / "recipes" / name / "run.sh", RECIPE_INPUTS_DIR="/in", NCCL_NVLS_ENABLE="0",
                                RECIPE_RUN_DIR=str(tmp_path / "run"), RECIPE_RUN_ID="x"))
        assert submitted(cmds) == [*want["entrypoint"], *want["argv"]]
        submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
        assert json.loads(submit[submit.index("--runtime-env-json") + 1])["env_vars"] == want["env"]
    assert list(tmp_path.iterdir()) == []  # a dry run makes nothing


def test_by_hand_without_the_inputs_the_script_says_what_to_set():
    p = by_hand()
    assert p.returncode != 0 and p.stdout == ""
    assert "RECIPE_INPUTS_DIR: set RECIPE_INPUTS_DIR to the inputs root" in p.stderr


def test_the_plan_launches_the_default_cell_as_recipe_toml_states_it():
    got = args_to_dict(plan().argv)
    c, run, hw = NANO.cell(None), NANO.run_defaults, NANO.hardware
    assert got["--tensor-model-parallel-size"] == str(c.tp)
    assert got["--pipeline-model-parallel-size"] == str(c.pp)
    assert got["--context-parallel-size"] == str(c.cp)
    assert got["--expert-model-parallel-size"] == str(c.ep)
    assert got["--expert-tensor-parallel-size"] == str(c.etp)
    assert ("--sequence-parallel" in got) == c.sp
    assert got["--max-tokens-per-gpu"] == str(c.max_tokens_per_gpu)
    assert got["--num-rollout"] == str(run.num_rollout)
    assert got["--seed"] == str(run.seed) and got["--rollout-seed"] == str(run.rollout_seed)
    assert ("--deterministic-mode" in got) == run.deterministic
    assert got["--actor-num-nodes"] == str(hw.nodes) and got["--actor-num-gpus-per-node"] == str(hw.gpus_per_node)
    row = NANO.framework_options
    assert got["--n-samples-per-prompt"] == str(row["n_samples_per_prompt"])
    assert got["--log-probs-chunk-size"] == str(row["log_probs_chunk_size"])


def test_multi_node_counts_come_from_the_launch():
    got = args_to_dict(plan(nodes=2, gpus_per_node=8).argv)
    assert got["--actor-num-nodes"] == "2" and got["--rollout-num-gpus"] == "16" and got["--num-gpus-per-node"] == "8"


def test_joining_a_cluster_starts_no_ray_head():
    # A cluster other hosts reach requires its token (launch.sh recipe_ray_token), never in argv.
    cmds = commands(by_hand(RECIPE_INPUTS_DIR="/in", RECIPE_RAY_ADDRESS="10.0.0.1:6379", RECIPE_RUN_ID="x",
                            RAY_AUTH_TOKEN="cluster-token-0123"))
    assert not any("start" in c and "ray" in c for c in cmds)
    assert not any("cluster-token-0123" in w for c in cmds for w in c)
    wait = next(c for c in cmds if any(w.endswith("ray_wait.py") for w in c))
    assert wait[wait.index("--address") + 1] == "10.0.0.1:6379"
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    assert submit[submit.index("--address") + 1] == "http://127.0.0.1:8265"  # that cluster's dashboard


def test_deterministic_opt_in_sets_flags_and_env():
    p = plan(deterministic=True)
    assert "--deterministic-mode" in p.argv and "--sglang-enable-deterministic-inference" in p.argv
    assert {k: p.job_env[k] for k in ("NCCL_ALGO", "NVTE_ALLOW_NONDETERMINISTIC_ALGO", "CUBLAS_WORKSPACE_CONFIG")} \
        == {"NCCL_ALGO": "Ring", "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert "--deterministic-mode" not in plan().argv


def test_wandb_key_never_on_a_command_line_or_in_the_script():
    planted = "sk-test-PLANTED-0123456789"
    p = plan({"RECIPE_WANDB_PROJECT": "proj", "WANDB_API_KEY": planted, "HF_TOKEN": planted})
    text = render_script(p, lib="/lib/launch.sh") + json.dumps(p.as_dict())
    assert "--use-wandb" in p.argv and "--wandb-key" not in p.argv
    assert planted not in text and p.job_env["WANDB_API_KEY"] == "$WANDB_API_KEY"
    assert "WANDB_API_KEY" not in p.runtime_env  # inherited from `ray start`'s environment, never written


def test_job_env_matches_upstream_runtime_env():
    p = plan({"NCCL_NVLS_ENABLE": "1", "MASTER_ADDR": "10.1.2.3", "RECIPE_MILES_DIR": "/m",
              "RECIPE_MEGATRON_DIR": "/meg"})
    assert p.job_env == {"PYTHONPATH": "/m:/meg", "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_NVLS_ENABLE": "1",
                         "MASTER_ADDR": "10.1.2.3", "PYTHONUNBUFFERED": "1", "no_proxy": "127.0.0.1,localhost,10.1.2.3",
                         # ours, not upstream's: the metrics are read from the job's log (docs/records.md)
                         "RAY_DEDUP_LOGS": "0"}
    assert p.entrypoint == ["python3", "/m/train.py"]


def test_script_never_kills_by_name():
    text = "\n".join(p.read_text() for p in (ROOT / "recipes").rglob("*.sh"))
    for bad in (r"\bpkill\b", r"\bkillall\b", r"\bray\s+stop(\s|$)"):
        assert not re.search(bad, text, re.M), bad


def test_joining_a_cluster_without_its_token_is_a_usage_error():
    p = by_hand(RECIPE_INPUTS_DIR="/in", RECIPE_RAY_ADDRESS="10.0.0.1:6379", RECIPE_RUN_ID="x", RAY_AUTH_TOKEN="")
    assert p.returncode == 2 and "RAY_AUTH_TOKEN is not set" in p.stderr, p.stderr
    assert "ray job submit" not in p.stdout
