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
from conftest import ROOT, clean_env, make_bundle, plan_env, recipe

from runner.recipe import list_recipes

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


def recipe_in(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe(*args, env=clean_env(RECIPE_BUNDLE_ROOT=str(root), **env), cwd=root)


# ---- generated shell: integers are checked before bash does arithmetic with them ----------------

INT_VARS = ("RECIPE_NODES", "RECIPE_GPUS_PER_NODE", "RECIPE_TP", "RECIPE_NUM_ROLLOUT", "RECIPE_SEED")


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("var", INT_VARS)
def test_run_script_never_evaluates_a_variable_as_code(name, var, tmp_path):
    canary = tmp_path / "pwned"
    env = plan_env(name, RECIPE_DRY_RUN="1", RECIPE_RUN_DIR=str(tmp_path / "run"),
                   **{var: f"BASH_VERSINFO[$(touch {canary})]"})
    p = subprocess.run(["bash", str(ROOT / "recipes" / name / "run.sh")], env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert not canary.exists()
    assert p.returncode == 2 and f"{var} must be an integer >= 0" in p.stderr, p.stderr


def test_a_forwarded_name_is_never_expanded_as_code(tmp_path):
    """RECIPE_FORWARD_ENV names variables; bash's ${!name} would evaluate an array subscript in one."""
    canary = tmp_path / "pwned"
    env = plan_env("nemotron3_nano", RECIPE_DRY_RUN="1", RECIPE_FORWARD_ENV=f"NCCL_DEBUG a[$(touch {canary})]")
    p = subprocess.run(["bash", str(ROOT / "recipes" / "nemotron3_nano" / "run.sh")], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert not canary.exists()
    assert p.returncode == 2 and "'a[$(touch" in p.stderr and "is not an environment variable name" in p.stderr


@pytest.mark.parametrize("value", ["010", "-1", "1e3", " 8", "99999999999999999999"])
def test_run_script_refuses_integers_bash_would_misread(value):
    """010 is octal 8 in $((...)), and 20 digits overflow: only plain decimal integers pass."""
    env = plan_env("nemotron3_nano", RECIPE_DRY_RUN="1", RECIPE_GPUS_PER_NODE=value)
    p = subprocess.run(["bash", str(ROOT / "recipes" / "nemotron3_nano" / "run.sh")], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 2 and "RECIPE_GPUS_PER_NODE must be an integer >= 0" in p.stderr


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


def test_run_script_escapes_control_characters_into_valid_json(tmp_path):
    """The job environment JSON stays valid whatever the script puts in it (a tab in a path)."""
    env = plan_env("nemotron3_nano", RECIPE_DRY_RUN="1", MASTER_ADDR="host\tname")
    p = subprocess.run(["bash", str(ROOT / "recipes" / "nemotron3_nano" / "run.sh")], env=env, capture_output=True,
                       timeout=60, check=False)
    from runner.plan.dryrun import split_job
    from runner.plan.shellwords import split

    cmds = [split(line[2:]) for line in p.stdout.split(b"\n") if line.startswith(b"+ ")]
    job_env, _, _ = split_job(cmds)
    assert job_env["MASTER_ADDR"] == "host\tname"


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
    toml.write_text(f"{table} = {value}\n" + toml.read_text().replace(f"[{table}]\n", f"[old_{table}]\n", 1))
    line = one_line_error(recipe_in(root, "plan", "nemotron3_nano"))
    assert f"[{table}] must be a table" in line and str(toml) in line


@pytest.mark.parametrize("edit,field", [
    (("gpus_per_node = 8", "gpus_per_node = \"8\""), "field 'gpus_per_node' of [hardware] must be an integer"),
    (("num_rollout = 10", "num_rollout = 0"), "field 'num_rollout' of [run] must be an integer >= 1"),
    (("tp = 2\n", "tp = true\n"), "field 'tp' of [cells.default] must be an integer"),
    (("min_driver = 580", "min_driver = \"580\""), "field 'min_driver' of [image] must be an integer"),
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
    toml.write_text(toml.read_text().replace(f"[{table}]\n", f"[unused_{table}]\n", 1))
    line = one_line_error(recipe_in(root, verb[0], "nemotron3_nano", *verb[1:]))
    assert f"table [{table}] is required" in line and str(toml) in line


def test_a_missing_run_script_is_named(tmp_path):
    root, d = bundle_with(tmp_path)
    (d / "run.sh").unlink()
    line = one_line_error(recipe_in(root, "plan", "nemotron3_nano"))
    assert str(d / "run.sh") in line and "not found" in line


def test_a_run_script_whose_dry_run_fails_is_exit_2_naming_it(tmp_path):
    root, d = bundle_with(tmp_path)
    script = d / "run.sh"
    script.write_text("#!/usr/bin/env bash\necho 'something broke' >&2\nexit 7\n")
    line = one_line_error(recipe_in(root, "plan", "nemotron3_nano"))
    assert str(script) in line and "exit 7" in line and "something broke" in line


def test_a_run_script_printing_what_no_printf_q_prints_is_refused(tmp_path):
    root, d = bundle_with(tmp_path)
    (d / "run.sh").write_text("#!/usr/bin/env bash\necho '+ ray job submit $(id)'\n")
    assert "is not printf %q output" in one_line_error(recipe_in(root, "plan", "nemotron3_nano"))


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
    assert one_line_error(p).startswith(f"recipe: error: {flag} must be an integer from")


@pytest.mark.parametrize("var,value", [("RECIPE_NUM_ROLLOUT", "ten"), ("RECIPE_NODES", "0"),
                                       ("RECIPE_DETERMINISTIC", "yes")])
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
