"""The recipe tag manifest (recipe.sha256): the committed one is current, and edits are caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.inputs import manifest as mf
from runner.inputs import tagmanifest
from runner.paths import recipes_dir
from runner.recipe import list_recipes, load_recipe, load_recipe_dir

REPO = Path(__file__).resolve().parent.parent
WITH_TAG_MANIFEST = [n for n in list_recipes() if "recipe_manifest" in load_recipe(n).files]


@pytest.mark.parametrize("name", WITH_TAG_MANIFEST)
def test_committed_tag_manifest_matches_the_recipe_files(name):
    recipe = load_recipe(name)
    problems = tagmanifest.stale(recipe)
    assert not problems, (f"{tagmanifest.tag_manifest_path(recipe)} is stale ({'; '.join(problems)}). "
                          f"Regenerate it: recipe lock {name} --recipe-files")


def test_nemotron3_nano_has_a_tag_manifest_covering_its_run_script_and_shared_lib():
    assert "nemotron3_nano" in WITH_TAG_MANIFEST
    paths = mf.load(tagmanifest.tag_manifest_path(load_recipe("nemotron3_nano"))).by_path()
    for rel in ("nemotron3_nano/recipe.toml", "nemotron3_nano/model_args.txt", "nemotron3_nano/run.sh",
                "nemotron3_nano/hf_config.json", "nemotron3_nano/inputs.sha256", "lib/launch.sh"):
        assert rel in paths
    assert "nemotron3_nano/recipe.sha256" not in paths  # it cannot cover itself


@pytest.fixture
def copy(tmp_path) -> Path:
    """A bundle root holding a copy of nemotron3_nano and the shared lib."""
    dst = tmp_path / "bundle" / "recipes"
    shutil.copytree(recipes_dir() / "nemotron3_nano", dst / "nemotron3_nano")
    shutil.copytree(recipes_dir() / "lib", dst / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_regeneration_tolerates_a_missing_listed_file_and_coreutils_agrees(copy):
    (copy / "nemotron3_nano" / "expected_metrics.toml").unlink(missing_ok=True)
    recipe = load_recipe_dir(copy / "nemotron3_nano")
    changed, missing = tagmanifest.write(recipe)
    assert missing == ["nemotron3_nano/expected_metrics.toml"]
    m = mf.load(copy / "nemotron3_nano" / "recipe.sha256")
    assert "nemotron3_nano/expected_metrics.toml" not in m.by_path()
    assert tagmanifest.stale(recipe) == []
    r = subprocess.run(["sha256sum", "-c", "--strict", "nemotron3_nano/recipe.sha256"], cwd=copy,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_edit_a_new_file_and_a_removed_file_are_all_caught(copy):
    recipe = load_recipe_dir(copy / "nemotron3_nano")
    tagmanifest.write(recipe)
    with open(copy / "nemotron3_nano" / "model_args.txt", "a") as f:
        f.write("--num-layers 53\n")
    (copy / "nemotron3_nano" / "notes.txt").write_text("new\n")
    (copy / "lib" / "ray_wait.py").unlink()
    assert tagmanifest.stale(recipe) == [
        "lib/ray_wait.py: listed but gone",
        "nemotron3_nano/model_args.txt: edited since the tag manifest was written",
        "nemotron3_nano/notes.txt: not covered",
    ]


def test_cli_check_says_how_to_regenerate_and_regenerate_fixes_it(copy):
    env = {**os.environ, "RECIPE_BUNDLE_ROOT": str(copy.parent)}

    def cli(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner.cli", "lock", "nemotron3_nano", *a], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=60)

    assert cli("--recipe-files").returncode == 0
    assert cli("--recipe-files", "--check").returncode == 0
    (copy / "nemotron3_nano" / "expected_metrics.toml").write_text("# edited\n")
    r = cli("--recipe-files", "--check")
    assert r.returncode == 1
    assert "expected_metrics.toml: edited" in r.stdout and "recipe lock nemotron3_nano --recipe-files" in r.stderr
    (copy / "nemotron3_nano" / "run.sh").write_text("#!/usr/bin/env bash\necho edited\n")  # not the rendering
    r = cli("--recipe-files", "--check")
    assert r.returncode == 1 and "run.sh is not the launch this checkout renders" in r.stderr
    (copy / "nemotron3_nano" / "expected_metrics.toml").write_text(
        (REPO / "recipes" / "nemotron3_nano" / "expected_metrics.toml").read_text())
    assert cli("--recipe-files").returncode == 0 and cli("--recipe-files", "--check").returncode == 0
