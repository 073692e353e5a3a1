"""Bad input to a launch (run scripts, recipe files, flags, paths): exit 2 and one line, never a
traceback, never code executed; odd but legal values come back literally.

Each test reproduces one finding of the adversarial review (issue 14: "Generated shell" and "Bad
files and numbers") against the real CLI or the real run scripts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe

from runner.recipe import list_recipes, load_recipe

RECIPES = tuple(list_recipes())  # every shipped run script


def one_line_error(p: subprocess.CompletedProcess, code: int = 2) -> str:
    assert p.returncode == code, (p.returncode, p.stdout[-500:], p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recipe: error: "), p.stderr
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
    return lines[0]


def bundle_with(tmp_path: Path, name: str = "nemotron3_nano") -> tuple[Path, Path]:
    """A bundle holding one real recipe, free to be broken; (bundle root, recipe dir)."""
    root = make_bundle(tmp_path, ROOT / "recipes" / name, name)
    return root, root / "recipes" / name


def without_table(text: str, table: str) -> str:
    """recipe.toml text with the table [table] (its header and keys) and its sub-tables ([table.x]) left out."""
    start = text.index(f"\n[{table}]\n")
    end = start + 1
    while (end := text.find("\n[", end + 1)) != -1 and text.startswith(f"\n[{table}.", end):
        pass
    return text[:start] + (text[end:] if end != -1 else "\n")


def recipe_in(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe(*args, env=clean_env(RECIPE_BUNDLE_ROOT=str(root), **env), cwd=root)


# ---- generated shell: integers are checked before bash does arithmetic with them ----------------

INT_VARS = ("RECIPE_NODES", "RECIPE_GPUS_PER_NODE", "RECIPE_TP", "RECIPE_NUM_ROLLOUT", "RECIPE_SEED")


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("var", INT_VARS)
def test_run_script_never_evaluates_a_variable_as_code(name, var, tmp_path):
    """The frozen script holds its numbers literally: a caller's RECIPE_* value is never evaluated
    (it held `$((RECIPE_NODES * RECIPE_GPUS_PER_NODE))` once, and bash evaluates a subscript's command)."""
    canary = tmp_path / "pwned"
    env = clean_env(RECIPE_DRY_RUN="1", RECIPE_INPUTS_DIR="/in", RECIPE_RUN_DIR=str(tmp_path / "run"),
                    RECIPE_RUN_ID="x", NCCL_NVLS_ENABLE="0", **{var: f"BASH_VERSINFO[$(touch {canary})]"})
    p = subprocess.run(["bash", str(ROOT / "recipes" / name / "run.sh")], env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert not canary.exists()
    assert p.returncode == 0 and "+ ray job submit" in p.stdout, p.stderr


def test_a_forwarded_value_is_never_expanded_as_code(tmp_path):
    """The forwarded NCCL/Gloo variables are read in Python and written quoted into the script."""
    from runner.plan.render import render_plan
    from runner.plan.script import render_script

    canary = tmp_path / "pwned"
    planted = {"NCCL_DEBUG": f"$(touch {canary})", "NCCL_SOCKET_IFNAME": f"`touch {canary}`"}
    os_env = {**planted, "NCCL_NVLS_ENABLE": "0"}
    import os

    old = {k: os.environ.get(k) for k in os_env}
    os.environ.update(os_env)
    try:
        plan = render_plan(load_recipe("nemotron3_nano"), inputs_dir=Path("/in"), run_dir=tmp_path / "run")
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert {k: plan.job_env[k] for k in planted} == planted
    text = render_script(plan, lib=str(ROOT / "recipes" / "lib" / "launch.sh"))
    exports = "\n".join(line for line in text.splitlines() if line.startswith("export "))
    subprocess.run(["bash", "-c", exports + '\nprintf "%s\\n" "$NCCL_DEBUG"'], check=True, capture_output=True)
    assert not canary.exists()


def test_launch_lib_checks_the_ray_numbers_it_does_arithmetic_with(tmp_path):
    canary = tmp_path / "pwned"
    script = (f"source {ROOT}/recipes/lib/launch.sh; recipe_ray_defaults; "
              'recipe_wait_tcp 127.0.0.1 1 "$RECIPE_RAY_READY_TIMEOUT"')
    p = subprocess.run(["bash", "-c", script], env=clean_env(RECIPE_RAY_READY_TIMEOUT=f"a[$(touch {canary})]"),
                       capture_output=True, text=True, timeout=30, check=False)
    assert not canary.exists()
    assert p.returncode == 2 and "RECIPE_RAY_READY_TIMEOUT must be an integer >= 0" in p.stderr


# ---- the dry run's printf %q output is read exactly ---------------------------------------------

@pytest.mark.parametrize("locale", [{"LANG": "C.UTF-8"}, {"LC_ALL": "C"}], ids=["utf8", "C"])
@pytest.mark.parametrize("inputs", ["/tmp/in\tput", "/tmp/ünïcödé", "/tmp/a'b \"c\" $x"], ids=["tab", "utf8", "quotes"])
def test_plan_reads_odd_paths_back_literally(inputs, locale):
    env = {k: v for k, v in clean_env().items() if k not in ("LANG", "LC_ALL")}
    p = recipe("plan", "nemotron3_nano", "--inputs", inputs, "--format", "json", env={**env, **locale})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["argv"][doc["argv"].index("--hf-checkpoint") + 1] == f"{inputs}/model"
    assert doc["script_env"]["RECIPE_INPUTS_DIR"] == inputs


def test_newline_in_master_addr_is_a_one_line_usage_error():
    p = recipe("plan", "nemotron3_nano", env=clean_env(MASTER_ADDR="10.0.0.1\nevil"))
    assert "MASTER_ADDR" in one_line_error(p)


def test_the_job_environment_json_stays_valid_with_a_tab_in_a_value(tmp_path):
    """The job environment reaches Ray as JSON built by launch.sh from the script's exports."""
    p = subprocess.run(["bash", str(ROOT / "recipes" / "nemotron3_nano" / "run.sh")],
                       env=clean_env(RECIPE_DRY_RUN="1", RECIPE_INPUTS_DIR="/in\tput", RECIPE_RUN_ID="x",
                                     NCCL_NVLS_ENABLE="0", RECIPE_RUN_DIR=str(tmp_path / "run")),
                       capture_output=True, text=True, timeout=60, check=False)
    import shlex

    submit = next(shlex.split(line[2:]) for line in p.stdout.splitlines() if line.startswith("+ ray job submit"))
    env = json.loads(submit[submit.index("--runtime-env-json") + 1])["env_vars"]
    assert env["MASTER_ADDR"] == "127.0.0.1" and env["PYTHONPATH"] == "/root/miles:/root/Megatron-LM"


# ---- bad files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rel,verb", [("recipe.toml", "plan"), ("model_args.txt", "plan"),
                                      ("hf_config.json", "lint")])
def test_a_file_that_is_not_utf8_is_named(tmp_path, rel, verb):
    root, d = bundle_with(tmp_path)
    f = d / rel
    f.write_bytes(f.read_bytes() + b"\n# \xff\xfe latin-1 bytes\n")
    line = one_line_error(recipe_in(root, verb, "nemotron3_nano"))
    assert str(f) in line and "not UTF-8" in line


@pytest.mark.parametrize("table,value", [("hardware", "3"), ("run", "[1, 2]"), ("files", '"x"')])
def test_a_table_that_is_a_scalar_or_a_list_is_named(tmp_path, table, value):
    root, d = bundle_with(tmp_path)
    toml = d / "recipe.toml"
    text = without_table(toml.read_text(), table)
    toml.write_text(text.replace("schema = 1\n", f"schema = 1\n{table} = {value}\n", 1))
    line = one_line_error(recipe_in(root, "plan", "nemotron3_nano"))
    assert f"key '{table}'" in line and "valid dictionary" in line and str(toml) in line


@pytest.mark.parametrize("edit,field", [
    (("gpus_per_node = 8", "gpus_per_node = \"8\""), "[hardware] key 'gpus_per_node': input should be a valid integer"),
    (("num_rollout = 10", "num_rollout = 0"), "[run] key 'num_rollout': input should be greater than or equal to 1"),
    (("tp = 2\n", "tp = true\n"), "[cells.default] key 'tp': input should be a valid integer"),
    (("min_driver = 580", "min_driver = \"580\""), "[image] key 'min_driver': input should be a valid integer"),
])
def test_a_field_of_the_wrong_type_is_named(tmp_path, edit, field):
    root, d = bundle_with(tmp_path)
    toml = d / "recipe.toml"
    toml.write_text(toml.read_text().replace(*edit, 1))
    assert field in one_line_error(recipe_in(root, "plan", "nemotron3_nano"))


@pytest.mark.parametrize("table", ["hardware", "run"])
@pytest.mark.parametrize("verb", [("plan",), ("sbatch", "--nodes", "1", "--container-runtime", "none")],
                         ids=["plan", "sbatch"])
def test_a_missing_table_is_an_error_not_a_made_up_default(tmp_path, table, verb):
    """Without [run], plan used --num-rollout 1; without [hardware], sbatch rendered GPUS_PER_NODE=0."""
    root, d = bundle_with(tmp_path)
    toml = d / "recipe.toml"
    toml.write_text(without_table(toml.read_text(), table))
    line = one_line_error(recipe_in(root, verb[0], "nemotron3_nano", *verb[1:]))
    assert f"key '{table}': field required" in line and str(toml) in line


def test_a_run_script_that_is_not_the_frozen_rendering_is_named(tmp_path):
    """The recipe's run.sh is what the runner renders for its default cell; an edit by hand shows."""
    root, d = bundle_with(tmp_path)
    (d / "run.sh").write_text((d / "run.sh").read_text().replace("--lr 1e-6", "--lr 1e-5"))
    p = recipe_in(root, "lock", "nemotron3_nano", "--recipe-files", "--check")
    assert p.returncode == 1 and f"{d / 'run.sh'} is not the launch this checkout renders" in p.stderr, p.stderr


# ---- bad numbers --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,flag", [
    (["--num-rollout", "0"], "--num-rollout"), (["--num-rollout", "-5"], "--num-rollout"),
    (["--nodes", "100000"], "--nodes"), (["--gpus-per-node", "4096"], "--gpus-per-node"),
    (["--seed", "-1"], "--seed"),
])
@pytest.mark.parametrize("verb", [["plan"], ["sbatch", "--container-runtime", "none"], ["run", "--dry-run"]],
                         ids=["plan", "sbatch", "run"])
def test_numbers_beyond_reason_are_refused(args, flag, verb):
    p = recipe(verb[0], "nemotron3_nano_tiny", *verb[1:], *args)
    line = one_line_error(p)
    assert line.startswith(f"recipe: error: Invalid value for '{flag}'") and "is not in the range" in line


@pytest.mark.parametrize("var,value", [("RECIPE_NUM_ROLLOUT", "ten"), ("RECIPE_NODES", "0"),
                                       ("RECIPE_DETERMINISTIC", "maybe")])
def test_bad_recipe_environment_values_are_named(var, value):
    assert var in one_line_error(recipe("plan", "nemotron3_nano_tiny", env=clean_env(**{var: value})))


# ---- docker mounts ------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,path", [("--inputs", "/tmp/a:b"), ("--output-dir", "/tmp/a,b"),
                                       ("--run-dir", "/tmp/r:un")])
def test_docker_mount_paths_with_colon_or_comma_are_refused(flag, path):
    p = recipe("plan", "nemotron3_nano", "--backend", "docker", flag, path)
    line = one_line_error(p)
    assert "docker cannot mount a path containing ':' or ','" in line


def test_docker_refuses_model_dir_outside_its_mounts():
    p = recipe("plan", "nemotron3_nano", "--backend", "docker", "--model-dir", "/elsewhere/model")
    assert "--model-dir" in one_line_error(p)



def test_sbatch_ready_timeout_must_be_positive():
    p = recipe("sbatch", "nemotron3_nano_tiny", "--container-runtime", "none", "--ready-timeout", "-5")
    assert "--ready-timeout must be 1 to 86400 seconds" in one_line_error(p)


def test_plan_shows_a_run_directory_under_recipe_runs_dir(tmp_path):
    p = recipe("plan", "nemotron3_nano_tiny", "--format", "json", env=clean_env(RECIPE_RUNS_DIR=str(tmp_path)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["script_env"]["RECIPE_RUN_DIR"] == str(tmp_path / "nemotron3_nano_tiny-plan")
    assert list(tmp_path.iterdir()) == []  # shown, never created
