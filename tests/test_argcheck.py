"""The `args` preflight check: miles' own parser on the plan's argv with the plan's job env.

The parser here is a stand-in with the interface of miles.utils.arguments.parse_args
(tests/data/fake_miles): it reads sys.argv, rejects unknown flags and bad values through argparse,
loads the HF config (auto_map module included) and asserts what Megatron's validate_args asserts.
It is put on the job's PYTHONPATH the way the real one is, through RECIPE_MILES_DIR."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.frameworks import miles_args as argcheck
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe

FAKE = ROOT / "tests" / "data" / "fake_miles"
NANO = ROOT / "recipes" / "nemotron3_nano"


def make_inputs(tmp_path: Path, config: dict | None = None, remote_code: bool = True) -> Path:
    inputs = tmp_path / "inputs"
    (inputs / "model").mkdir(parents=True)
    (inputs / "data").mkdir()
    cfg = config or json.loads((NANO / "hf_config.json").read_text())
    (inputs / "model" / "config.json").write_text(json.dumps(cfg))
    if remote_code:
        module = cfg["auto_map"]["AutoConfig"].split(".")[0]
        (inputs / "model" / f"{module}.py").write_text("# the remote configuration code\n")
    return inputs


def launch(tmp_path, monkeypatch, inputs: Path | None = None, miles: Path | None = FAKE, **kw):
    if miles is not None:
        monkeypatch.setenv("RECIPE_MILES_DIR", str(miles))
    opts = RunOptions.resolve(load_recipe(kw.pop("name", "nemotron3_nano")),
                              {"inputs_dir": inputs or make_inputs(tmp_path), **kw})
    return build_launch(opts, run_id="r-1", run_dir=tmp_path / "run", backend="local")


def check(lc, monkeypatch=None, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return argcheck.check_args(lc.recipe, lc.plan)


def test_the_shipped_launch_passes_and_the_parser_sees_exactly_the_plan(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    seen = tmp_path / "seen.json"
    c = check(lc, monkeypatch, FAKE_MILES_RECORD=str(seen), WANDB_API_KEY="secret-value-123456")
    assert c.status == "ok", c.detail
    assert c.data["ran"] is True and c.data["result"] == {"status": "ok"}
    got = json.loads(seen.read_text())
    assert got["argv"] == [lc.plan.entrypoint[1], *lc.plan.argv]
    assert got["pythonpath"].split(":")[0] == str(FAKE)  # the job env's PYTHONPATH, miles first
    assert got["secrets"] == []  # parsing needs no secret; none is handed to it


def test_unknown_flags_one_line_each(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    lc.plan.argv += ["--use-mile-router", "--no-such-flag", "3"]
    c = check(lc)
    assert c.status == "fail"
    assert c.data["lines"] == ["unknown flag --use-mile-router", "unknown flag --no-such-flag 3"]
    assert c.detail.splitlines()[1:] == ["unknown flag --use-mile-router", "unknown flag --no-such-flag 3"]
    assert "recipe plan nemotron3_nano" in c.fix


def test_a_bad_value_names_the_flag(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    argv = lc.plan.argv
    argv[argv.index("--lr") + 1] = "fast"
    lc.plan.argv = argv
    c = check(lc)
    assert c.status == "fail" and c.data["lines"] == ["bad value: argument --lr: invalid float value: 'fast'"]


def test_job_env_without_cuda_device_max_connections_fails_megatrons_validation(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)  # the default cell has TP2
    del lc.plan.job_env["CUDA_DEVICE_MAX_CONNECTIONS"]
    (line,) = check(lc).data["lines"]
    assert line.startswith("failed validation (AssertionError at miles/utils/arguments.py:")
    assert "CUDA_DEVICE_MAX_CONNECTIONS to 1" in line


def test_deterministic_mode_passes_with_the_plans_nccl_algo_and_fails_without(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, deterministic=True)
    assert lc.plan.job_env["NCCL_ALGO"] == "Ring"
    assert check(lc).status == "ok"
    del lc.plan.job_env["NCCL_ALGO"]
    (line,) = check(lc).data["lines"]
    assert "NCCL_ALGO must be one of" in line


def test_layout_that_does_not_divide_the_world(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    argv = lc.plan.argv
    argv[argv.index("--actor-num-gpus-per-node") + 1] = "6"
    lc.plan.argv = argv
    (line,) = check(lc).data["lines"]
    assert "world size (6) is not divisible by total_model_size" in line


def test_hf_config_that_disagrees_with_the_model_flags(tmp_path, monkeypatch):
    cfg = json.loads((NANO / "hf_config.json").read_text())
    cfg["hidden_size"] += 8
    lc = launch(tmp_path, monkeypatch, inputs=make_inputs(tmp_path, cfg))
    (line,) = check(lc).data["lines"]
    assert "hf_validate_args failed: hidden_size in hf config" in line


def test_model_dir_without_its_remote_configuration_code(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, inputs=make_inputs(tmp_path, remote_code=False))
    (line,) = check(lc).data["lines"]
    assert line.startswith("failed validation (OSError") and "configuration_nemotron_h.py" in line


def test_outside_the_image_it_says_skipped_and_why(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, miles=tmp_path / "no-miles-here")
    c = check(lc)
    assert c.status == "skipped"
    assert "miles is not importable" in c.detail and "not inside the pinned image" in c.detail
    assert c.data["ran"] is False and c.data["interpreter"]


def test_without_the_model_config_it_is_skipped_naming_the_file(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    (empty / "model").mkdir(parents=True)
    c = check(launch(tmp_path, monkeypatch, inputs=empty))
    assert c.status == "skipped" and "config.json" in c.detail


def test_a_hanging_parser_is_ended_at_the_timeout(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    c = check(lc, monkeypatch, FAKE_MILES_SLEEP="60", RECIPE_ARGS_CHECK_TIMEOUT="1")
    assert c.status == "fail" and "did not finish within 1 s" in c.detail
    assert c.data["seconds"] < 30


def test_non_miles_recipe_is_not_applicable(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, inputs=ROOT / "recipes" / "nemotron3_nano_tiny" / "inputs",
                name="nemotron3_nano_tiny")
    assert check(lc).status == "n/a"


def test_the_run_record_keeps_the_check(tmp_path, monkeypatch):
    from runner.launch.run import provenance

    lc = launch(tmp_path, monkeypatch)
    lc.plan.argv += ["--no-such-flag"]
    rec = provenance(lc, [check(lc)])
    (row,) = [c for c in rec["preflight"] if c["name"] == "args"]
    assert row["status"] == "fail" and row["data"]["lines"] == ["unknown flag --no-such-flag"]


@pytest.fixture
def bundle(tmp_path):
    shutil.copytree(ROOT / "recipes" / "lib", tmp_path / "b" / "recipes" / "lib")
    shutil.copytree(NANO, tmp_path / "b" / "recipes" / "nemotron3_nano")
    shutil.copytree(ROOT / "docker", tmp_path / "b" / "docker")
    return tmp_path / "b"


def test_run_preflight_and_doctor_report_a_flag_the_parser_rejects(tmp_path, bundle):
    args = bundle / "recipes" / "nemotron3_nano" / "model_args.txt"  # the model block of the argv
    args.write_text(args.read_text() + "--no-such-flag 7\n")
    inputs = make_inputs(tmp_path)
    env = clean_env(RECIPE_BUNDLE_ROOT=str(bundle), RECIPE_MILES_DIR=str(FAKE), RECIPE_INPUTS_DIR=str(inputs))
    p = recipe("run", "nemotron3_nano", "--backend", "local", "--dry-run", "--runs-dir", str(tmp_path / "runs"),
               env=env, cwd=tmp_path)
    assert re.search(r"\n +fail  args +miles rejects the launch \(1 problem\(s\)\):", p.stderr), p.stderr
    assert re.search(r"\n {19,}unknown flag --no-such-flag 7\n", p.stderr), p.stderr   # under the detail column
    p = recipe("doctor", "nemotron3_nano", "--json", env=env, cwd=tmp_path)
    rows = [r for r in json.loads(p.stdout)["rows"] if r["kind"] == "args"]
    assert [(r["status"], r["detail"]) for r in rows] == [("error", "unknown flag --no-such-flag 7")]
    args.write_text(args.read_text().replace("--no-such-flag 7\n", ""))
    p = recipe("doctor", "nemotron3_nano", "--json", env=env, cwd=tmp_path)
    rows = [r for r in json.loads(p.stdout)["rows"] if r["kind"] == "args"]
    assert [r["status"] for r in rows] == ["ok"]
