"""nemotron3_nano_4b's argv equals what upstream's own launcher renders for the 4B.

Runs the real scripts/run_nemotron_3_nano.py of the vendored miles 78527b91 tarball (its `execute`,
`_RECIPES`, `U.execute_train` and scripts/models/nemotron-3-nano-4b.py) with only the execution side
replaced: `exec_command_*` record the shell commands instead of running them (that module imports
ray), and `http_utils` (httpx, unused by the launch path) is an empty module. The `ray job submit`
command it would run is split with shlex and compared with our rendered plan, minus the bundle's own
flags (--seed, --rollout-seed). Under CI=true a missing tarball fails.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import tarfile
import types
from pathlib import Path

import pytest

from runner.plan.render import render_plan
from runner.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT.parent / "shared" / "vendor" / "upstream"
MODEL_NAME = "NVIDIA-Nemotron-3-Nano-4B-BF16"
BUNDLE_OWN = {"--seed": 1, "--rollout-seed": 1}


@pytest.fixture(scope="module")
def miles_tree(tmp_path_factory):
    tars = sorted(VENDOR.glob("miles-78527b91*.tar.gz"))
    if not tars:
        if os.environ.get("CI") == "true":
            pytest.fail(f"vendored miles tarball missing under {VENDOR}")
        pytest.skip("vendored miles tarball not available")
    out = tmp_path_factory.mktemp("miles")
    with tarfile.open(tars[0]) as t:
        t.extractall(out, filter="data")
    (top,) = [p for p in out.iterdir() if p.is_dir()]
    return top


def _upstream_commands(top: Path, monkeypatch) -> list[str]:
    commands: list[str] = []

    def record(cmd, capture_output=False):
        commands.append(cmd)
        return "0" if capture_output else None   # `nvidia-smi topo -m | ... | wc -l`: no NVLink

    stub = types.ModuleType("miles.utils.external_utils.exec_command")
    stub.exec_command_cpu = stub.exec_command_gpu = record
    stub.exec_command_multi_node = record
    monkeypatch.setitem(sys.modules, "miles.utils.external_utils.exec_command", stub)
    http = types.ModuleType("miles.utils.http_utils")
    http.wait_for_server_ready = None
    monkeypatch.setitem(sys.modules, "miles.utils.http_utils", http)
    for name in [m for m in sys.modules if m == "miles" or m.startswith("miles.")]:
        if name not in ("miles.utils.external_utils.exec_command", "miles.utils.http_utils"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(top))
    for var in ("WANDB_API_KEY", "MILES_SCRIPT_EXTERNAL_RAY", "RAY_ADDRESS", "NCCL_NVLS_ENABLE",
                "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_DEBUG_FILE",
                "MILES_SCRIPT_ENABLE_RAY_SUBMIT", "SLURM_JOB_NUM_NODES"):
        monkeypatch.delenv(var, raising=False)
    spec = importlib.util.spec_from_file_location("run_nemotron_3_nano", top / "scripts" / "run_nemotron_3_nano.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = mod.ScriptArgs(model_name=MODEL_NAME, model_dir="/models", data_dir="/datasets",
                          output_dir="/out", num_nodes=1)
    mod.execute(args)
    return commands


def _train_argv(submit: str) -> list[str]:
    words = shlex.split(submit)
    return words[words.index("--") + 1:]


def _without_bundle_flags(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] in BUNDLE_OWN:
            i += 1 + BUNDLE_OWN[argv[i]]
            continue
        out.append(argv[i])
        i += 1
    return out


def test_4b_argv_equals_upstream_launcher(miles_tree, monkeypatch):
    submits = [c for c in _upstream_commands(miles_tree, monkeypatch) if "ray job submit" in c]
    assert len(submits) == 1, submits
    want = _train_argv(submits[0])
    assert want[0] == "python3" and want[1].endswith("/train.py")
    # Upstream joins paths from --model-dir/--model-name and --data-dir/dapo-math-17k/; ours come
    # from the inputs root. Give ours the same directories so every word is compared.
    plan = render_plan(load_recipe("nemotron3_nano_4b"), None,
                       model_dir=Path(f"/models/{MODEL_NAME}"), data_dir=Path("/datasets/dapo-math-17k"),
                       output_dir=Path("/out"), run_dir=Path("/run"), inputs_dir=Path("/in"))
    got = list(plan.argv)   # the words after `python3 .../train.py`
    assert _without_bundle_flags(got) == want[2:]
    # and the bundle's own flags are there, once each
    for flag in BUNDLE_OWN:
        assert got.count(flag) == 1, flag


def test_30b_differs_from_upstream_only_where_documented(miles_tree, monkeypatch):
    """The 30B keeps --use-miles-router from the seed recipe (run.sh says why); nothing else differs."""
    submits = []
    orig = MODEL_NAME
    try:
        globals()["MODEL_NAME"] = "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
        submits = [c for c in _upstream_commands(miles_tree, monkeypatch) if "ray job submit" in c]
    finally:
        globals()["MODEL_NAME"] = orig
    want = _train_argv(submits[0])
    plan = render_plan(load_recipe("nemotron3_nano"), None,
                       model_dir=Path("/models/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"),
                       data_dir=Path("/datasets/dapo-math-17k"),
                       output_dir=Path("/out"), run_dir=Path("/run"), inputs_dir=Path("/in"))
    got = _without_bundle_flags(list(plan.argv))
    got.remove("--use-miles-router")
    assert got == want[2:]


def test_4b_run_script_is_its_frozen_plan_and_says_what_to_set_by_hand():
    """The 4B's run.sh holds its launch literally (its layout among it); by hand it asks only for the inputs."""
    import subprocess
    plan = render_plan(load_recipe("nemotron3_nano_4b"), None, inputs_dir=Path("/in"), output_dir=Path("/run/output"),
                       run_dir=Path("/run"), run_id="t")
    script = ROOT / "recipes" / "nemotron3_nano_4b" / "run.sh"
    env = {"PATH": os.environ["PATH"], "RECIPE_DRY_RUN": "1", "NCCL_NVLS_ENABLE": "0", "RECIPE_INPUTS_DIR": "/in",
           "RECIPE_RUN_DIR": "/run", "RECIPE_RUN_ID": "t"}
    ok = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert " ".join(plan.argv) in ok.stdout.replace("\\", "")
    env.pop("RECIPE_INPUTS_DIR")
    bad = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "set RECIPE_INPUTS_DIR to the inputs root" in bad.stderr
