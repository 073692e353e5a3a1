"""recipe.toml has one schema (runner/recipe.py): a key, table or version it does not know is a
one-line usage error (exit 2) naming the file, the table, the key and the nearest valid name; a
value of the wrong type or out of bounds names its key. Every shipped recipe loads."""

from __future__ import annotations

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe

from runner.errors import UsageError
from runner.recipe import Hardware, list_recipes, load_recipe, load_recipe_dir

NANO = ROOT / "recipes" / "nemotron3_nano"


def edited(tmp_path, old: str, new: str):
    root = make_bundle(tmp_path, NANO, "nemotron3_nano")
    f = root / "recipes" / "nemotron3_nano" / "recipe.toml"
    text = f.read_text()
    assert old in text, old
    f.write_text(text.replace(old, new, 1))
    return root, f


@pytest.mark.parametrize("old,new,message", [
    # the typo the review found: min_shm_gib silently became 0 and the shm check passed anywhere
    ("min_shm_gib = 16", "min_shm_gb = 16", "[hardware] has no key 'min_shm_gb'; did you mean 'min_shm_gib'?"),
    ("\n[determinism]", "\n[determinsm]", "the top level has no key 'determinsm'; did you mean 'determinism'?"),
    ("schema = 1", "schema = 99", "schema = 99: this runner reads recipe.toml schema 1"),
    ("schema = 1\n", "", "schema = None: this runner reads recipe.toml schema 1 (add `schema = 1` at the top)"),
    ("[cells.ep4]\n", "[cells.ep4]\nep5 = 3\n", "[cells.ep4] has no key 'ep5'; did you mean 'ep'?"),
    ("bridge = ", "brige = ", "[miles] has no key 'brige'; did you mean 'bridge'?"),
    ("nodes = 1\n", "nodes = 0\n", "[hardware] key 'nodes': input should be greater than or equal to 1, got 0"),
    ("tp = 2\n", 'tp = "2"\n', "[cells.default] key 'tp': input should be a valid integer, got '2'"),
    ("sp = true", "sp = 1", "[cells.default] key 'sp': input should be a valid boolean, got 1"),
    ("min_shm_gib = 16", 'min_shm_gib = "16"', "[hardware] key 'min_shm_gib': input should be a valid number"),
    ("[hardware]\n", "[hardware]\nname = 'x'\n", "[hardware] has no key 'name'"),
    ("measured_logprob_abs_diff = [0.01312, 0.01436]", "measured_logprob_abs_diff = [0.01312]",
     "[cells.default] key 'measured_logprob_abs_diff' (item 2): field required"),
])
def test_an_unknown_or_mistyped_key_is_one_line_naming_it(tmp_path, old, new, message):
    root, f = edited(tmp_path, old, new)
    with pytest.raises(UsageError) as e:
        load_recipe_dir(f.parent)
        from runner.frameworks import framework_of  # the [miles] table is the adapter's schema

        framework_of(load_recipe_dir(f.parent))
    assert e.value.message.startswith(f"{f}: {message}"), e.value.message
    p = recipe("show", "nemotron3_nano", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    p = recipe("plan", "nemotron3_nano", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


def test_every_shipped_recipe_loads_and_states_its_defaults():
    for name in list_recipes():
        r = load_recipe(name)
        assert r.cell(None).name == r.default_cell
    # a default is stated on its field, never made up by a reader
    assert Hardware.model_fields["min_shm_gib"].default == 0
    assert Hardware.model_fields["nodes"].is_required()
