"""nemotron3_nano_tiny: its files agree with each other, its inputs verify and rebuild, its reward scores,
its trainer refuses a mismatched config, and (slow) a real run through Ray passes the gate and reruns
bit for bit."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, importorskip, load_tiny_module, make_bundle, recipe

from runner.launch.ports import ray_ports
from runner.recipe import args_to_dict, load_recipe

TINY = ROOT / "recipes" / "nemotron3_nano_tiny"
MODEL = TINY / "inputs" / "model"
PY = sys.executable


_load = load_tiny_module


reward = _load("reward")


# ---- the recipe's files ------------------------------------------------------------------------------

def test_recipe_file_shape():
    r = load_recipe("nemotron3_nano_tiny")
    assert r.framework == "trl" and r.image == "none"
    assert r.hardware.gpus_per_node == 0 and r.hardware.nodes == 1
    assert r.default_cell == "cpu" and list(r.cells) == ["cpu"]
    assert r.cell(None).as_dict() == {"tp": 1, "pp": 1, "cp": 1, "ep": 1, "etp": 1, "sp": False,
                                      "max_tokens_per_gpu": 512}
    assert r.determinism.tier == "bitwise"
    for key in ("model_args", "run_script", "expected_metrics", "manifest", "recipe_manifest"):
        assert r.path(key).is_file(), key
    from runner.inputs.layout import inputs_root
    assert inputs_root(r) == TINY / "inputs"


def test_config_matches_committed_weights():
    torch = importorskip("torch")
    transformers = importorskip("transformers")
    from safetensors import safe_open

    config = transformers.AutoConfig.from_pretrained(MODEL)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in transformers.AutoModelForCausalLM.from_config(config)
                    .state_dict().items()}
    with safe_open(str(MODEL / "model.safetensors"), "pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert stored == expected
    assert dtypes == {"BF16"}
    n = sum(math.prod(s) for s in stored.values())
    assert 1_000_000 < n < 2_000_000, n
    # the 30B's architecture switches, at toy size
    assert config.routed_scaling_factor == 2.5 and config.norm_topk_prob
    assert config.hybrid_override_pattern == "MEMEM*EME"
    assert config.mlp_hidden_act == "relu2" and config.n_shared_experts == 1
    assert config.num_experts_per_tok < config.n_routed_experts


def test_model_args_agree_with_config_and_the_check_can_fail(tmp_path):
    importorskip("transformers")
    bridge = _load("bridge")
    assert bridge.check_files(TINY / "model_args.txt", MODEL / "config.json") == []
    # the same mapping holds for the 30B recipe's frozen flags and its real config.json
    nano = ROOT / "recipes" / "nemotron3_nano"
    assert bridge.check_files(nano / "model_args.txt", nano / "hf_config.json") == []
    raw = json.loads((MODEL / "config.json").read_text())
    raw["num_experts_per_tok"] = 6
    problems = bridge.mismatches(bridge.read_flags(TINY / "model_args.txt"), raw)
    assert problems == ["num_experts_per_tok: model args say --moe-router-topk 4, the HF config gives 6"]


def test_tokenizer_round_trips_every_problem():
    transformers = importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(MODEL)
    rows = [json.loads(line) for line in (TINY / "inputs" / "data" / "arithmetic.jsonl").read_text().splitlines()]
    assert len(rows) == 256 and len({r["prompt"] for r in rows}) == 256
    for r in rows:
        ids = tok(r["prompt"] + r["label"])["input_ids"]
        assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == r["prompt"] + r["label"]
        assert str(eval(r["prompt"][:-1], {"__builtins__": {}})) == r["label"]  # noqa: S307 - digits and + - *
    assert len(tok) == json.loads((MODEL / "config.json").read_text())["vocab_size"]


# ---- inputs: manifest and generator --------------------------------------------------------------------

def test_inputs_verify_with_recipe_verify_and_sha256sum():
    p = recipe("verify", "nemotron3_nano_tiny")
    assert p.returncode == 0, p.stderr + p.stdout
    if shutil.which("sha256sum"):
        q = subprocess.run(["sha256sum", "-c", "--strict", "../inputs.sha256"], cwd=TINY / "inputs",
                           capture_output=True, text=True)
        assert q.returncode == 0, q.stdout + q.stderr


def test_damaged_input_fails_verify(tmp_path):
    shutil.copytree(TINY / "inputs", tmp_path / "in")
    weights = tmp_path / "in" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    p = recipe("verify", "nemotron3_nano_tiny", "--inputs", str(tmp_path / "in"))
    assert p.returncode == 5, p.stdout + p.stderr
    assert "model.safetensors" in p.stdout + p.stderr


def test_generator_rebuilds_committed_inputs_byte_for_byte():
    p = subprocess.run([PY, str(TINY / "make_inputs.py"), "--check"], capture_output=True, text=True,
                       timeout=300, env=clean_env())
    assert p.returncode == 0, p.stdout + p.stderr


# ---- reward -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("response,label,want", [
    ("19", "19", 1.0),
    (" 19 ", "19", 1.0),
    ("-4", "-4", 1.0),
    ("4", "-4", 0.25),
    ("019", "19", 0.25),          # a number, not the answer's spelling
    ("18", "19", 0.25),
    ("1+8", "9", 0.0),
    ("", "0", 0.0),
    ("-", "0", 0.0),
    ("19=", "19", 0.0),
    ("--4", "-4", 0.0),
])
def test_score(response, label, want):
    assert reward.score(response, label) == want


def test_reward_function_signature_and_group_shares():
    assert reward.arithmetic_reward(["3", "x", "12"], label=["3", "3", "3"], prompts=["1+2="] * 3) == [1.0, 0.0, 0.25]
    with pytest.raises(ValueError):
        reward.arithmetic_reward(["3"], label=["3", "4"])
    assert reward.all_zero_fraction([0, 0, 0, 0, 0, 1, 0, 0], 4) == 0.5
    assert reward.all_zero_fraction([0.25] * 4 + [0.0] * 4, 4) == 0.5
    with pytest.raises(ValueError, match="groups of 4"):
        reward.all_zero_fraction([0.0] * 6, 4)


# ---- events: what the gate reads --------------------------------------------------------------------------

def test_events_parse_with_the_bundles_metric_reader(tmp_path):
    importorskip("transformers")
    events = _load("events")
    from runner.gate.metrics import collect

    w = events.EventWriter(tmp_path / "ev")
    w.log("actor_cell0_rank0", {"train/loss": 0.5, "train/grad_norm": float("nan"), "train/step": 0})
    w.log("rollout_manager", {"rollout/raw_reward": 0.125, "rollout/step": 0})
    w.close()
    for f in (tmp_path / "ev").iterdir():
        for line in f.read_text().splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    s = collect(tmp_path / "ev")
    assert s.get("train/loss", 0) == 0.5 and s.get("rollout/raw_reward", 0) == 0.125
    assert math.isnan(s.get("train/grad_norm", 0))


# ---- the run script ---------------------------------------------------------------------------------------

def tiny_env(**extra: str) -> dict[str, str]:
    """The frozen run.sh's variables, by hand: the committed inputs, a run id."""
    return clean_env(**{"RECIPE_INPUTS_DIR": str(TINY / "inputs"), "RECIPE_RUN_ID": "x", **extra})


def dry_run(env: dict[str, str]) -> list[list[str]]:
    p = subprocess.run(["bash", str(TINY / "run.sh")], env={**env, "RECIPE_DRY_RUN": "1"}, capture_output=True,
                       text=True, check=True, timeout=60)
    return [shlex.split(line[2:]) for line in p.stdout.splitlines() if line.startswith("+ ")]


def job_of(cmds: list[list[str]]) -> tuple[dict[str, str], list[str]]:
    submit = next(c for c in cmds if c[:3] == ["ray", "job", "submit"])
    env = json.loads(submit[submit.index("--runtime-env-json") + 1])["env_vars"]
    return env, submit[submit.index("--") + 1:]


def test_dry_run_launches_grpo_with_the_recipe_constants(tmp_path):
    cmds = dry_run(tiny_env(RECIPE_RUN_DIR=str(tmp_path / "run"), RECIPE_OUTPUT_DIR=str(tmp_path / "out")))
    assert list(tmp_path.iterdir()) == []  # dry run: no side effects
    start = next(c for c in cmds if "start" in c)
    assert start[start.index("--num-gpus") + 1] == "0"
    env, job = job_of(cmds)
    assert job[:2] == ["python3", str(TINY / "train_grpo.py")]
    got = args_to_dict(job[2:])
    assert got["--kl-loss-coef"] == "0.00" and got["--eps-clip"] == "0.2" and got["--eps-clip-high"] == "0.28"
    assert got["--rollout-temperature"] == "1" and got["--n-samples-per-prompt"] == "4"
    assert got["--moe-router-topk-scaling-factor"] == "2.5"
    r = load_recipe("nemotron3_nano_tiny")
    assert got["--num-rollout"] == str(r.run_defaults.num_rollout)
    assert got["--seed"] == str(r.run_defaults.seed) and got["--rollout-seed"] == str(r.run_defaults.rollout_seed)
    assert got["--save-debug-event-data"] == str(tmp_path / "run" / "events")
    assert ("--deterministic-mode" in got) == r.run_defaults.deterministic  # by hand as through the runner
    assert "--use-rollout-routing-replay" in got  # R3, as the 30B run
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_dry_run_equals_recipe_plan(tmp_path):
    run = tmp_path / "run"
    p = recipe("plan", "nemotron3_nano_tiny", "--run-dir", str(run), "--output-dir", str(run / "output"),
               "--format", "json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    env, job = job_of(dry_run(tiny_env(RECIPE_RUN_DIR=str(run))))
    assert job == [*plan["entrypoint"], *plan["argv"]] and env == plan["env"]


def test_joining_a_cluster_starts_no_head():
    cmds = dry_run(tiny_env(RECIPE_RAY_ADDRESS="10.0.0.1:6379", RAY_AUTH_TOKEN="cluster-token-0123"))
    assert not any(c[:1] == ["setsid"] for c in cmds)
    assert not any("cluster-token-0123" in w for c in cmds for w in c)  # the token stays in the environment
    wait = next(c for c in cmds if any(w.endswith("ray_wait.py") for w in c))
    assert wait[wait.index("--address") + 1] == "10.0.0.1:6379" and wait[wait.index("--gpus") + 1] == "0"


def test_model_parallel_cells_are_refused(tmp_path):
    root = make_bundle(tmp_path, TINY, "nemotron3_nano_tiny")
    toml = root / "recipes" / "nemotron3_nano_tiny" / "recipe.toml"
    toml.write_text(toml.read_text() + "\n[cells.tp2]\ntp = 2\npp = 1\ncp = 1\nep = 1\netp = 1\n"
                    "max_tokens_per_gpu = 512\n")
    p = recipe("plan", "nemotron3_nano_tiny", "--cell", "tp2", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 2 and "runs in one CPU process: cell 'tp2' must have tp, pp, cp, ep and etp all 1" \
        in p.stderr, p.stderr


# ---- the trainer --------------------------------------------------------------------------------------------

def train_cmd(model_dir: Path, out: Path, *extra: str) -> list[str]:
    from runner.plan.options import RunOptions
    from runner.plan.render import plan_for

    opts = RunOptions.resolve(load_recipe("nemotron3_nano_tiny"), {"model_dir": model_dir, "output_dir": out})
    plan = plan_for(opts, run_dir=out / "run", run_id="x", environ={})
    return [PY, plan.entrypoint[1], *plan.argv, *extra]


def test_trainer_refuses_a_config_without_routed_scaling_factor(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    raw = json.loads((model / "config.json").read_text())
    del raw["routed_scaling_factor"]
    (model / "config.json").write_text(json.dumps(raw))
    p = subprocess.run(train_cmd(model, tmp_path), capture_output=True, text=True, timeout=300, env=clean_env())
    assert p.returncode == 3, p.stdout + p.stderr
    assert "routed_scaling_factor" in p.stderr and "absent from config.json" in p.stderr
    assert not (tmp_path / "run" / "events").exists() or not any((tmp_path / "run" / "events").iterdir())


def test_trainer_names_missing_inputs_in_one_line(tmp_path):
    cmd = train_cmd(MODEL, tmp_path)
    cmd[cmd.index("--prompt-data") + 1] = str(tmp_path / "nope.jsonl")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=clean_env())
    assert p.returncode == 4 and p.stderr.strip().count("\n") == 0
    assert "--prompt-data" in p.stderr and "nope.jsonl" in p.stderr

    (tmp_path / "rows.jsonl").write_text('{"question": "1+1=", "label": "2"}\n')
    cmd[cmd.index("--prompt-data") + 1] = str(tmp_path / "rows.jsonl")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=clean_env())
    assert p.returncode == 2 and "no field prompt" in p.stderr, p.stderr[-2000:]


@pytest.mark.slow
def test_run_script_through_ray_passes_gate_and_reruns_bitwise(tmp_path):
    """The real run: Ray head, job, events; gate; then the same argv without Ray gives the same bits."""
    from runner.gate.evaluate import compare_exact
    from runner.gate.metrics import collect

    # Ray's socket paths must stay under 107 bytes: a short temp dir, not pytest's deep tmp_path.
    ray_tmp = tempfile.mkdtemp(prefix="tinyray-", dir="/tmp")
    env = tiny_env(RECIPE_RUN_DIR=str(tmp_path / "run"), RECIPE_OUTPUT_DIR=str(tmp_path / "out"),
                    RECIPE_RUN_ID="tiny-test", PATH=f"{Path(PY).parent}{os.pathsep}{os.environ['PATH']}",
                    RECIPE_RAY_TEMP_DIR=ray_tmp, RECIPE_RAY_NUM_CPUS="2", RECIPE_RAY_READY_TIMEOUT="60")
    env.update(ray_ports())
    p = subprocess.Popen(["bash", str(TINY / "run.sh")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate()
        pytest.fail(f"run.sh took over 180 s:\n{out[:3000]}\n...\n{out[-3000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 0, out[-4000:]
    assert "ray stopped" in out
    group = int(re.search(r"ray head started \(process group (\d+)\)", out).group(1))
    with pytest.raises(ProcessLookupError):  # nothing of our Ray is left running
        os.killpg(group, 0)
    gate = recipe("check", str(tmp_path / "run" / "events"), "--recipe", "nemotron3_nano_tiny")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    series = collect(tmp_path / "run" / "events")
    for name in ("train/loss", "train/pg_loss", "train/pg_clipfrac", "train/ppo_kl", "train/grad_norm",
                 "train/train_rollout_logprob_abs_diff", "rollout/raw_reward", "rollout/response_len/mean",
                 "rollout/zero_std/all_zero_percentage", "perf/step_time"):
        assert series.steps(name) == list(range(10)), name

    # The same trainer argv, run directly: identical values except the wall-clock perf/* ones.
    _, job = job_of(dry_run(env))
    again = tmp_path / "again"
    argv = [PY, *job[1:]]
    argv[argv.index("--save-debug-event-data") + 1] = str(again)
    q = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                       env={**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert q.returncode == 0, q.stderr[-3000:]
    diffs = [d for d in compare_exact(collect(tmp_path / "run" / "events"), collect(again))
             if not d.startswith("perf/")]
    assert diffs == []
