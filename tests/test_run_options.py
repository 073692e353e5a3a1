"""runner/plan/options.py: one precedence (CLI > RECIPE_* > recipe.toml), resolved once, and the
inner run's argv derived from it rather than listed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from conftest import clean_env, recipe

from runner.errors import UsageError
from runner.launch import backends
from runner.plan.options import ENV, RunOptions, pop_cli, run_options
from runner.recipe import load_recipe

NANO = load_recipe("nemotron3_nano")


def test_recipe_toml_is_the_default():
    o = RunOptions.resolve(NANO)
    assert (o.nodes, o.gpus_per_node) == (NANO.hardware.nodes, NANO.hardware.gpus_per_node)
    assert (o.num_rollout, o.seed, o.rollout_seed) == (10, 1234, 42)
    assert o.cell.name == NANO.default_cell and o.image == NANO.image and o.deterministic is False


def test_environment_beats_recipe_and_command_line_beats_both(monkeypatch):
    env = {"RECIPE_NUM_ROLLOUT": "3", "RECIPE_SEED": "7", "RECIPE_CELL": "ep4", "RECIPE_DETERMINISTIC": "1",
           "RECIPE_IMAGE": "reg.example/x@sha256:" + "a" * 64}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    o = RunOptions.resolve(NANO, from_env=True)
    assert (o.num_rollout, o.seed, o.cell.name, o.deterministic) == (3, 7, "ep4", True)
    assert o.image == env["RECIPE_IMAGE"]
    o = RunOptions.resolve(NANO, {"num_rollout": 5, "cell": "pp2_ep4", "deterministic": False}, from_env=True)
    assert (o.num_rollout, o.seed, o.cell.name, o.deterministic) == (5, 7, "pp2_ep4", False)
    assert RunOptions.resolve(NANO).seed == 1234   # a caller's own options: the environment unread
    # the command line, through click: the flag beats its variable, the variable the recipe
    got = {}

    @click.command()
    @run_options
    def cmd(**kw):
        got.update(pop_cli(kw))

    cmd.main(["--num-rollout", "5", "--no-deterministic"], standalone_mode=False)
    o = RunOptions.resolve(NANO, got)
    assert (o.num_rollout, o.seed, o.cell.name, o.deterministic, o.nodes) == (5, 7, "ep4", False, NANO.hardware.nodes)


def test_every_option_has_its_variable_and_the_run_script_reads_it():
    """The RECIPE_* names the runner honours are the ones the run scripts read (image aside: the runner's)."""
    for name in ("nemotron3_nano", "nemotron3_nano_4b", "nemotron3_nano_tiny"):
        script = load_recipe(name).path("run_script")
        text = script.read_text()
        # with the shared blocks it sources (recipes/lib/miles_grpo.sh reads the miles recipes' values)
        sourced = re.findall(r'source "\$here/(\.\./lib/[\w.]+)"', text)
        text += "".join((script.parent / rel).read_text() for rel in sourced)
        for key, var in ENV.items():
            # the image and cell are the runner's; the inputs dir it turns into RECIPE_MODEL_DIR/DATA_DIR
            if key not in ("image", "cell", "inputs_dir"):
                assert var in text, (name, var)


def test_run_and_sbatch_agree_on_the_output_default():
    """Both put checkpoints under the run's own directory unless told otherwise."""
    o = RunOptions.resolve(NANO)
    assert o.output_for(Path("/runs/x")) == Path("/runs/x/output")
    p = recipe("sbatch", "nemotron3_nano", "--container-runtime", "none", env=clean_env())
    assert p.returncode == 0, p.stderr
    run_dir = re.search(r"^RUN_DIR='?([^'\n]*)'?$", p.stdout, re.M).group(1)
    assert f"OUTPUT_DIR={run_dir}/output" in p.stdout.replace("'", "")


def test_skippable_checks_come_from_the_backends():
    names = backends.skippable()
    assert set(backends.check_names("local")) | {"docker", "slurm", "pyxis", "enroot"} == set(names)
    p = recipe("run", "nemotron3_nano_tiny", "--skip-preflight", "nonsense", "--dry-run")
    assert p.returncode == 2 and "'nonsense' is not one of" in p.stderr


def test_unknown_cell_from_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("RECIPE_CELL", "nope")
    with pytest.raises(UsageError, match="unknown cell 'nope'"):
        RunOptions.resolve(NANO, from_env=True)


def test_a_dry_run_exits_as_the_run_would(tmp_path):
    # on this machine (no GPU, not the pinned image) the 30B's preflight fails: the run would exit 3
    runs = tmp_path / "runs"
    run = recipe("run", "nemotron3_nano", "--backend", "local", "--runs-dir", str(runs))
    dry = recipe("run", "nemotron3_nano", "--backend", "local", "--runs-dir", str(runs), "--dry-run")
    assert run.returncode == dry.returncode == 3, (run.stderr, dry.stderr)
    assert "preflight:" in dry.stderr and "fail  gpus" in dry.stderr
    assert "ray job submit" in dry.stdout   # the commands are still shown
    assert re.search(r"dry run: \d+ preflight check\(s\) failed; the run would refuse \(exit 3\)$", dry.stderr.strip())
    assert not runs.exists() or not any(runs.iterdir())
