"""The CLI contract: shapes of list/show/plan, one-line errors with exit 2, cheap start-up,
and `recipe run` on a machine that cannot run the recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, clean_env, recipe

HEAVY = ("torch", "ray", "transformers", "huggingface_hub", "matplotlib", "numpy", "trl")


def test_list_prints_recipe_names():
    p = recipe("list")
    assert p.returncode == 0
    assert "nemotron3_nano" in [line.split()[0] for line in p.stdout.splitlines() if not line.startswith(" ")]


def _bless_header(root, name: str, **prov) -> None:
    (root / "recipes" / name / "reference_metrics.jsonl").write_text(json.dumps(
        {"schema": 1, "kind": "recipe-metrics", "provenance": {"run_id": f"r-{name}", **prov}}) + "\n")


def test_list_says_what_is_verified_where(tmp_path):
    """Issue 28 §8: verified only by a reference blessed on the recipe's own hardware."""
    import shutil

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes", ignore=shutil.ignore_patterns("reference_*"))
    h100 = {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": "81559", "driver": "580"}]}
    digest = "sha256:" + "ab" * 32
    _bless_header(tmp_path, "nemotron3_nano_tiny", nodes=1, gpus_per_node=0, image="none",
                  ended_at="2026-12-01T10:00:00+00:00", host={"gpus": []})
    _bless_header(tmp_path, "nemotron3_nano_4b", nodes=1, gpus_per_node=8, image=f"radixark/miles:v0.1.0@{digest}",
                  ended_at="2026-12-02T10:00:00+00:00", host=h100)
    # the 30B recipe asks for H200s: a run blessed on H100s does not verify it
    _bless_header(tmp_path, "nemotron3_nano", nodes=1, gpus_per_node=8, image="x", host=h100,
                  ended_at="2026-12-03T10:00:00+00:00")
    env = clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path))
    rows = {r["name"]: r for r in json.loads(recipe("list", "--json", env=env).stdout)}
    assert rows["nemotron3_nano_tiny"]["status"] == "2026-12-01 on CPU, host Python"
    assert rows["nemotron3_nano_4b"]["status"] == \
        "2026-12-02 on 1 node(s) x 8 NVIDIA H100 80GB HBM3, sha256:abababababab"
    assert rows["nemotron3_nano"]["status"] == "never run on its hardware"
    assert rows["nemotron3_nano"]["verified"] is None
    assert rows["nemotron3_nano_4b"]["verified"]["run_id"] == "r-nemotron3_nano_4b"
    text = recipe("list", env=env).stdout
    assert "2026-12-02 on 1 node(s) x 8 NVIDIA H100 80GB HBM3" in text and "bitwise" in text


def test_show_json_shape():
    p = recipe("show", "nemotron3_nano", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["name"] == "nemotron3_nano"
    assert d["default_cell"] == "default"
    assert d["cells"]["default"] == {"tp": 2, "pp": 2, "cp": 1, "ep": 2, "etp": 1, "sp": True,
                                     "max_tokens_per_gpu": 1024}
    assert len(d["cells"]) == 6
    assert d["files"]["model_args"] == "recipes/nemotron3_nano/model_args.txt"
    assert d["files"]["run_script"] == "recipes/nemotron3_nano/run.sh"
    assert d["files"]["expected_metrics"] == "recipes/nemotron3_nano/expected_metrics.toml"
    assert d["files"]["manifest"] == "recipes/nemotron3_nano/inputs.sha256"
    assert "@sha256:" in d["pins"]["image"]["reference"]


def test_plan_json_shape():
    p = recipe("plan", "nemotron3_nano", "--cell", "ep4", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["cell"] == "ep4"
    assert all(isinstance(a, str) for a in d["argv"])
    assert d["argv"][d["argv"].index("--expert-model-parallel-size") + 1] == "4"
    assert d["env"]["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert [c[:3] for c in d["commands"] if c[:1] == ["ray"]][0] == ["ray", "job", "submit"]


def test_plan_shows_secrets_by_name_only():
    planted = "hf_PLANTEDsecretVALUE123"
    p = recipe("plan", "nemotron3_nano", "--format", "json", env=clean_env(HF_TOKEN=planted, WANDB_API_KEY=planted))
    assert p.returncode == 0
    assert planted not in p.stdout + p.stderr
    env = json.loads(p.stdout)["env"]
    assert env["WANDB_API_KEY"] == "$WANDB_API_KEY" and env["HF_TOKEN"] == "$HF_TOKEN"


@pytest.mark.parametrize("args,needle", [
    (["plan", "nope"], "unknown recipe 'nope'; valid recipes: "),
    (["plan", "nemotron3_nano", "--cell", "tp8"], "unknown cell 'tp8' for recipe nemotron3_nano; valid cells: default"),
    (["plan", "nemotron3_nano", "--nodes", "0"], "'--nodes' (env var: 'RECIPE_NODES'): 0 is not in the range 1<=x<=64"),
    (["plan", "nemotron3_nano", "--gpus-per-node", "6"], "TP*PP*CP = 2*2*1 = 4 does not divide 6 GPUs"),
    (["plan", "nemotron3_nano", "--cell", "ep4", "--gpus-per-node", "6"], "EP*ETP = 4 does not divide the 6/1"),
    (["run", "nemotron3_nano", "--cell", "nope"], "unknown cell 'nope'"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    p = recipe(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr


def test_invalid_layout_names_valid_cells():
    p = recipe("plan", "nemotron3_nano", "--cell", "pp2_ep4", "--nodes", "1", "--gpus-per-node", "12")
    assert p.returncode == 2
    # a PP2 stage of 12 GPUs has 6, which EP4 does not divide; the other layouts fit
    assert "EP*ETP = 4 does not divide the 12/2 GPUs of a pipeline stage" in p.stderr
    assert p.stderr.strip().endswith("cells valid there: default, ep4, tp2_ep4_sp, cp2_ep4, tp2_pp2_ep2_sp")


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom runner.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert "Commands:" in p.stdout


def test_run_on_a_machine_without_gpus_says_what_is_missing(tmp_path):
    p = recipe("run", "nemotron3_nano", "--backend", "local", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path,
               env=clean_env(XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert p.returncode == 3, p.stderr
    assert "cannot run nemotron3_nano" in p.stderr
    assert "ok  lint" in p.stderr
    assert "fail  gpus" in p.stderr and "need 8 x H200" in p.stderr
    assert "fail  inputs" in p.stderr and "recipe fetch nemotron3_nano" in p.stderr
    assert "It would have run:" in p.stderr
    assert "  ray job submit" in p.stderr   # elided to the width; the full commands are in a file it names
    full = tmp_path / "cache" / "recipe-bundle" / "refused" / "nemotron3_nano-default-local.commands.txt"
    assert f"(full commands: {full})" in " ".join(p.stderr.split())
    assert "/root/miles/train.py" in full.read_text() and "--moe-router-topk-scaling-factor 2.5" in full.read_text()
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists(), "a run that never started must not leave a run directory"


def test_plan_shows_what_each_backend_runs_around_the_same_launch():
    local = json.loads(recipe("plan", "nemotron3_nano", "--format", "json").stdout)
    docker = recipe("plan", "nemotron3_nano", "--backend", "docker", "--format", "json",
                    env=clean_env(WANDB_API_KEY="sk-test-PLANTED-xyz"))
    slurm = recipe("plan", "nemotron3_nano", "--backend", "slurm", "--format", "json")
    assert docker.returncode == 0 and slurm.returncode == 0, docker.stderr + slurm.stderr
    d, s = json.loads(docker.stdout), json.loads(slurm.stdout)
    assert local["argv"] == s["argv"]  # the same launch, whatever wraps it
    # docker's, rendered with the paths the container sees (its mounts), is the same launch there
    env = local["script_env"]
    mounts = [(env["RECIPE_OUTPUT_DIR"], "/recipe/output"), (env["RECIPE_RUN_DIR"], "/recipe/run/nemotron3_nano-plan"),
              (env["RECIPE_INPUTS_DIR"], "/recipe/inputs")]
    moved = [w for w in local["argv"]]
    for host, job in mounts:
        moved = [w.replace(host, job) for w in moved]
    assert d["argv"] == moved and d["script_env"]["RECIPE_INPUTS_DIR"] == "/recipe/inputs"
    cmd = d["backend_command"]
    assert cmd[:2] == ["docker", "run"] and "--gpus" in cmd and "--ipc=host" in cmd
    assert cmd[cmd.index("-e") + 1] == "WANDB_API_KEY" and "sk-test-PLANTED-xyz" not in docker.stdout
    assert any("@sha256:" in w for w in cmd)
    assert "#SBATCH --nodes=1" in s["sbatch_script"] or "#SBATCH --nodes 1" in s["sbatch_script"]


def test_settings_from_the_environment_reach_the_plan_as_they_reach_the_run():
    p = recipe("plan", "nemotron3_nano", "--format", "json",
               env=clean_env(RECIPE_WANDB_PROJECT="nano-grpo", RECIPE_MILES_DIR="/opt/miles"))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    argv = d["argv"]
    assert argv[argv.index("--wandb-project") + 1] == "nano-grpo" and "--use-wandb" in argv
    assert d["entrypoint"] == ["python3", "/opt/miles/train.py"]


def closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """`recipe ARGS | head -0`, deterministically: the pipe's reader is gone before the first write."""
    import os

    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "runner.cli", *args], stdout=w, stderr=subprocess.PIPE,
                              text=True, env=clean_env(), cwd=ROOT, timeout=60, check=False)
    finally:
        os.close(w)


@pytest.mark.parametrize("args", [("plan", "nemotron3_nano"), ("list",), ("show", "nemotron3_nano", "--json"),
                                  ("--help",),
                                  ("plan", "--help")])
def test_a_read_only_verb_whose_stdout_closes_exits_quietly_with_141(args):
    p = closed_stdout(*args)
    assert (p.returncode, p.stderr) == (141, ""), p.stderr


def test_a_verb_that_does_something_still_says_it_was_cut_short(tmp_path):
    # `lock` rewrites a manifest: a closed stdout under it is an interruption, as it is for `run`
    # (tests/test_records.py test_a_closed_stdout_ends_the_script_and_finalizes_the_record)
    import os
    import shutil

    from runner.cli import READ_ONLY

    assert not {"run", "bless", "fetch", "lock", "replay", "report"} & READ_ONLY
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "runner.cli", "lock", "nemotron3_nano_tiny", "--recipe-files"],
                           stdout=w, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60, check=False,
                           env=clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path)))
    finally:
        os.close(w)
    assert p.returncode == 130 and p.stderr == "recipe: interrupted: stdout was closed\n", p.stderr


@pytest.mark.parametrize("verb", [("list",), ("show", "nemotron3_nano"), ("plan", "nemotron3_nano")])
def test_json_is_one_flag_across_verbs_and_format_json_its_alias(verb):
    a = recipe(*verb, "--json")
    b = recipe(*verb, "--format", "json")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout) == json.loads(b.stdout)
    assert recipe(*verb).stdout != a.stdout


def test_list_json_names_and_titles():
    d = json.loads(recipe("list", "--json").stdout)
    assert {"name": "nemotron3_nano_tiny"} .items() <= next(x for x in d if x["name"] == "nemotron3_nano_tiny").items()
    assert all(x["title"] for x in d)
