"""The real upstream stack of the 30B recipe, as ci/upstream_env.sh unpacks it, for the `upstream` tests.

miles 78527b91, radixark/Megatron-LM 37f91617 and NVIDIA-NeMo/Megatron-Bridge 73eb4b27 / 98dd9f95
with a venv of what they need on CPU (ci/upstream/requirements.txt). Importing this module skips the
test module that imports it when the environment is absent, and fails it under CI=true.

Remote code: config.json's auto_map names configuration_nemotron_h.py, whose real file (12,893
bytes) is not available here. make_inputs writes one that re-exports transformers' own
NemotronHConfig. That proves the shipped config.json (byte-exact) loads through the
trust_remote_code path; it does NOT prove the real remote file reads it the same way (the image
loads the real file).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import ROOT, required

from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe

UPSTREAM = Path(os.environ.get("RECIPE_TEST_UPSTREAM_DIR", "/opt/recipe-upstream/current"))
MILES = UPSTREAM / "src" / "miles-78527b91"
MEGATRON = UPSTREAM / "src" / "Megatron-LM-37f91617"
BRIDGES = {"73eb4b27": UPSTREAM / "src" / "Megatron-Bridge-73eb4b27" / "src",
           "98dd9f95": UPSTREAM / "src" / "Megatron-Bridge-98dd9f95" / "src"}
PYTHON = UPSTREAM / "venv" / "bin" / "python3"
NANO = ROOT / "recipes" / "nemotron3_nano"
TE_NAMES_ONLY = ROOT / "tests" / "data" / "te_names_only"

if not (PYTHON.exists() and MILES.is_dir() and MEGATRON.is_dir() and all(p.is_dir() for p in BRIDGES.values())):
    why = f"the upstream test environment is not at {UPSTREAM} (run ci/upstream_env.sh)"
    if required():
        pytest.fail(f"CI=true but {why}", pytrace=False)
    pytest.skip(why, allow_module_level=True)

REMOTE_CONFIG = ("# Written by tests/upstream_stack.py: NOT the model's real remote code.\n"
                 "from transformers.models.nemotron_h.configuration_nemotron_h import NemotronHConfig  # noqa: F401\n")


def make_inputs(tmp_path: Path, config: bytes | None = None, remote_code: bool = True) -> Path:
    model = tmp_path / "inputs" / "model"
    model.mkdir(parents=True)
    (tmp_path / "inputs" / "data").mkdir()
    (model / "config.json").write_bytes(config or (NANO / "hf_config.json").read_bytes())  # byte-exact
    if remote_code:
        (model / "configuration_nemotron_h.py").write_text(REMOTE_CONFIG)
    return tmp_path / "inputs"


def launch(tmp_path, monkeypatch, inputs: Path | None = None, **kw):
    """nemotron3_nano's launch, pointed at the vendored miles and Megatron-LM the way a user would:
    RECIPE_MILES_DIR / RECIPE_MEGATRON_DIR, the run script's own variables. The job's `python3` is
    the upstream venv's, as the image's is in the image (argcheck puts sys.executable's directory
    first on the job's PATH, as run_script does)."""
    monkeypatch.setenv("RECIPE_MILES_DIR", str(MILES))
    monkeypatch.setenv("RECIPE_MEGATRON_DIR", str(MEGATRON))
    opts = RunOptions.resolve(load_recipe("nemotron3_nano"), {"inputs_dir": inputs or make_inputs(tmp_path), **kw})
    lc = build_launch(opts, run_id="r-1", run_dir=tmp_path / "run", backend="local")
    monkeypatch.setattr(sys, "executable", str(PYTHON))
    return lc
