"""The `args` preflight (runner/frameworks/miles_args.py, as it is) against the REAL upstream parser.

miles 78527b91 and radixark/Megatron-LM 37f91617, unpacked by ci/upstream_env.sh with a venv of what
`miles.utils.arguments.parse_args()` needs on CPU (ci/upstream/requirements.txt). The plan points at
them the way a user would: RECIPE_MILES_DIR / RECIPE_MEGATRON_DIR, the run script's own variables;
the job interpreter is that venv's python3 (the runner's interpreter stands in for the image's, whose
directory argcheck puts first on the job's PATH, as run_script does).

Shimmed, test-only (ci/upstream/recipe_upstream_gpu_shim.py, loaded only in that venv): three GPU
queries answer as on the image's H200 — torch.cuda.get_device_capability() -> (9, 0), Megatron's
get_device_arch_version() -> 9, is_te_min_version() as for Transformer Engine 2.17.0. Nothing else.

Remote code: see tests/upstream_stack.py (a configuration_nemotron_h.py that re-exports transformers'
NemotronHConfig stands in for the real remote file, which is not available here): the shipped
config.json (byte-exact) loads through the trust_remote_code path and passes miles' hf_validate_args
against model_args.txt as transformers' class reads it; the real remote file may read it otherwise.

Differs from the image: SGLang's server args here are sglang 0.5.16 from PyPI, not the image's
sglang-miles cb05a44f; torch is 2.14.1 CPU-capable, not the image's 2.11.0; Python 3.11, not 3.12.
"""

from __future__ import annotations

import json

import pytest
from upstream_stack import MEGATRON, MILES, NANO, PYTHON, launch, make_inputs

from runner.frameworks import miles_args as argcheck
from runner.recipe import load_recipe

CELLS = sorted(load_recipe("nemotron3_nano").cells)


def check(lc, monkeypatch):
    return argcheck.check_args(lc.recipe, lc.plan)


@pytest.mark.parametrize("variant", ["plain", "deterministic", "nodes2"])
@pytest.mark.parametrize("cell", CELLS)
def test_upstream_parser_accepts_every_cell(tmp_path, monkeypatch, cell, variant):
    kw = {"cell": cell, **({"deterministic": True} if variant == "deterministic" else {}),
          **({"nodes": 2} if variant == "nodes2" else {})}
    lc = launch(tmp_path, monkeypatch, **kw)
    assert lc.plan.job_env["PYTHONPATH"].split(":")[:2] == [str(MILES), str(MEGATRON)]
    c = check(lc, monkeypatch)
    assert c.status == "ok", c.detail
    assert c.data["interpreter"] == str(PYTHON) and c.data["result"] == {"status": "ok"}


def test_upstream_unknown_flag(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    lc.plan.argv += ["--use-mile-router"]
    c = check(lc, monkeypatch)
    assert c.status == "fail" and c.data["lines"] == ["unknown flag --use-mile-router"]


def test_upstream_bad_choice(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    argv = lc.plan.argv
    argv[argv.index("--optimizer") + 1] = "adamw"
    lc.plan.argv = argv
    (line,) = check(lc, monkeypatch).data["lines"]
    assert line.startswith("bad value: argument --optimizer: invalid choice: 'adamw'"), line


def test_upstream_bad_integer(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    argv = lc.plan.argv
    argv[argv.index("--num-rollout") + 1] = "ten"
    lc.plan.argv = argv
    (line,) = check(lc, monkeypatch).data["lines"]
    assert line == "bad value: argument --num-rollout: invalid int value: 'ten'", line


def test_upstream_no_cuda_device_max_connections(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)  # the default cell has TP2; the shim says Hopper
    del lc.plan.job_env["CUDA_DEVICE_MAX_CONNECTIONS"]
    monkeypatch.delenv("CUDA_DEVICE_MAX_CONNECTIONS", raising=False)
    (line,) = check(lc, monkeypatch).data["lines"]
    assert line.startswith("failed validation (") and "CUDA_DEVICE_MAX_CONNECTIONS" in line, line


def test_upstream_deterministic_without_nccl_algo(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, deterministic=True)
    del lc.plan.job_env["NCCL_ALGO"]
    monkeypatch.delenv("NCCL_ALGO", raising=False)
    (line,) = check(lc, monkeypatch).data["lines"]
    assert "NCCL_ALGO" in line, line


def test_upstream_layout_that_does_not_divide_the_world(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch)
    argv = lc.plan.argv
    argv[argv.index("--actor-num-gpus-per-node") + 1] = "6"
    lc.plan.argv = argv
    (line,) = check(lc, monkeypatch).data["lines"]
    assert "world size (6) is not divisible" in line, line


def test_upstream_model_dir_without_its_remote_configuration_code(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, inputs=make_inputs(tmp_path, remote_code=False))
    (line,) = check(lc, monkeypatch).data["lines"]
    assert line.startswith("failed validation (") and "configuration_nemotron_h.py" in line, line


def test_upstream_hf_config_that_disagrees_with_the_model_flags(tmp_path, monkeypatch):
    cfg = json.loads((NANO / "hf_config.json").read_text())
    cfg["hidden_size"] += 8
    lc = launch(tmp_path, monkeypatch, inputs=make_inputs(tmp_path, json.dumps(cfg).encode()))
    (line,) = check(lc, monkeypatch).data["lines"]
    assert "hidden_size" in line, line


# The real parser's namespace for the launch: what turns miles' event logger on. Emits the values the
# capture depends on instead of "ok" (run_parser takes any child with CHILD's calling convention).
NAMESPACE_CHILD = argcheck.CHILD.replace(
    'parse_args()\nexcept ParserError',
    'ns = parse_args()\nexcept ParserError').replace(
    'else:\n    emit({"status": "ok"})',
    'else:\n    emit({"status": "ok", **{k: getattr(ns, k, "absent") for k in ('
    '"save_debug_event_data", "dump_details", "debug_train_only", "debug_rollout_only", '
    '"save_local_weight_checksum")}})')


@pytest.mark.parametrize("cell", CELLS)
def test_capture_leaves_the_event_logger_off(tmp_path, monkeypatch, cell):
    """miles checksums every SGLang engine's weights after each weight update whenever its event
    logger is on (radixark/miles miles/ray/train/group.py:269-279 @78527b91), and the logger is on
    exactly when args.save_debug_event_data is set (miles/utils/logging_utils.py:20-22; --dump-details
    sets it too, miles/utils/arguments.py:3183-3187). The recipe captures its metrics from the job's
    log instead, so the parsed launch must leave it None and the run unchanged."""
    assert NAMESPACE_CHILD != argcheck.CHILD and "ns = parse_args()" in NAMESPACE_CHILD
    lc = launch(tmp_path, monkeypatch, cell=cell)
    env = argcheck.job_process_env(lc.plan)
    assert env["RAY_DEDUP_LOGS"] == "0"   # every process's metric line reaches the job's log
    result, tail = argcheck.run_parser(str(PYTHON), lc.plan.entrypoint[1], lc.plan.argv, env, 300,
                                       child=NAMESPACE_CHILD)
    assert result == {"status": "ok", "save_debug_event_data": None, "dump_details": None,
                      "debug_train_only": False, "debug_rollout_only": False,
                      "save_local_weight_checksum": False}, tail


# What miles' own parser and validation leave of the resumed argv: the fields that decide what --load restores.
RESUME_FIELDS = r"""
import json, sys
from miles.utils.arguments import parse_args
sys.argv = sys.argv[1:]
a = parse_args()
keys = ("load", "start_rollout_id", "no_load_optim", "no_load_rng", "finetune", "megatron_to_hf_mode")
print("RESUME_FIELDS " + json.dumps({k: getattr(a, k, None) for k in keys}), flush=True)
"""


def test_upstream_parser_on_the_resumed_argv(tmp_path, monkeypatch):
    """The miles adapter's resumed argv (--load of the parent's --save, whose tracker names iteration 3)
    passes miles' parser; and it shows why `recipe resume` refuses a bridge-mode miles run at 78527b91:
    --load and the optimizer/RNG loads are kept, but start_rollout_id is reset to 0, even when given."""
    import dataclasses
    import subprocess

    from runner.frameworks.miles import ADAPTER
    from runner.plan.render import build_launch

    saved = tmp_path / "parent" / "output" / "checkpoints"
    (saved / "iter_0000003").mkdir(parents=True)
    (saved / "latest_checkpointed_iteration.txt").write_text("3\n")
    ckpt, incomplete = ADAPTER.checkpoints(saved.parent)
    assert ckpt == saved / "iter_0000003" and incomplete == []
    lc = launch(tmp_path, monkeypatch)
    lc = build_launch(dataclasses.replace(lc.options, resume_from=ckpt.parent), run_id="r-2",
                      run_dir=tmp_path / "run2", backend="local")
    argv = lc.plan.argv
    assert argv[argv.index("--load") + 1] == str(saved)
    c = check(lc, monkeypatch)
    assert c.status == "ok", c.detail
    assert "start_rollout_id" in ADAPTER.cannot_resume(argv)

    env = argcheck.job_process_env(lc.plan)
    for extra in ([], ["--start-rollout-id", "4"]):
        p = subprocess.run([str(PYTHON), "-c", RESUME_FIELDS, lc.plan.entrypoint[1], *argv, *extra], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESUME_FIELDS ")), None)
        assert line, p.stdout[-2000:] + p.stderr[-2000:]
        got = json.loads(line.split(" ", 1)[1])
        assert got["load"] == str(saved) and got["megatron_to_hf_mode"] == "bridge"
        assert not got["no_load_optim"] and not got["no_load_rng"] and not got["finetune"]
        assert got["start_rollout_id"] == 0, (extra, got)  # miles/utils/arguments.py:3045 @78527b91
