"""The dense 4B recipe's published config fields (recipes/nemotron3_nano_4b/published_config.json):
they are the model's (its published parameter count follows from them), and lint and the planner
cover the recipe with them on H100 and on H200."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, recipe

from runner.model.family import load_family
from runner.planner import plan_layouts
from runner.recipe import load_recipe

R4B = load_recipe("nemotron3_nano_4b")
FIELDS = ROOT / "recipes" / "nemotron3_nano_4b" / "published_config.json"
PUBLISHED_PARAMETERS = 3_973_556_832  # nvidia/NVIDIA-Nemotron-3-Nano-4B-BF16 at dfaf35de, the weights' record


def test_the_published_fields_give_the_published_parameter_count():
    cfg = json.loads(FIELDS.read_text())
    assert load_family("nemotron_h").shape(cfg).total_params() == PUBLISHED_PARAMETERS
    tied = {**cfg, "tie_word_embeddings": True}  # a wrong field would move the count
    assert load_family("nemotron_h").shape(tied).total_params() != PUBLISHED_PARAMETERS


def test_the_fields_are_not_passed_off_as_the_file():
    assert R4B.files["hf_config"] == "published_config.json"
    assert json.loads(FIELDS.read_text())["_provenance"].startswith("NOT config.json")
    assert "model/config.json" not in (ROOT / "recipes" / "nemotron3_nano_4b" / "inputs.sha256").read_text().split()


@pytest.mark.parametrize("gpu", ["H100", "H200"])
def test_the_planner_fits_the_recipes_cell_on_either_card(gpu):
    result = plan_layouts(R4B, 8, gpu=gpu)
    (row,) = result.cell_rows()
    assert result.gpu == gpu and row.cells == ["default"] and row.valid and row.fits, row
    assert result.total_params == PUBLISHED_PARAMETERS and result.expert_params == 0


def test_lint_runs_the_model_rules_and_finds_nothing_wrong():
    r = recipe("lint", "nemotron3_nano_4b", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and "model" in doc["checked"], r.stdout
    assert not [f for f in doc["findings"] if f["severity"] in ("error", "warning")]


def test_plan_gpu_without_gpus_is_a_usage_error():
    r = recipe("plan", "nemotron3_nano_4b", "--gpu", "H100")
    assert r.returncode == 2 and "--gpu sizes the layout table: give --gpus N" in r.stderr
