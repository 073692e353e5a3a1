"""recipe.toml `framework` names an adapter: the loader checks its form, the registry (a layer
above the loader) whether an adapter of that name exists; either way one line names the field."""

from __future__ import annotations

import shutil

import pytest
from conftest import ROOT

from runner.errors import EXIT_USAGE, UsageError
from runner.frameworks import framework_of, names
from runner.recipe import load_recipe_dir


def _recipe(tmp_path, framework: str):
    d = tmp_path / "nemotron3_nano_tiny"
    shutil.copytree(ROOT / "recipes" / "nemotron3_nano_tiny", d)
    f = d / "recipe.toml"
    text = f.read_text()
    assert 'framework = "trl"' in text
    text = text.replace('framework = "trl"', f"framework = {framework!r}".replace("'", '"'))
    if framework.isidentifier():  # the adapter's table is named after it
        text = text.replace("\n[trl]\n", f"\n[{framework}]\n")
    f.write_text(text)
    return d


def test_an_unregistered_framework_is_refused_naming_the_field_and_the_registered_ones(tmp_path):
    recipe = load_recipe_dir(_recipe(tmp_path, "verl"))
    with pytest.raises(UsageError) as e:
        framework_of(recipe)
    msg = str(e.value.message)
    assert e.value.code == EXIT_USAGE and "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'nemotron3_nano_tiny' / 'recipe.toml'}: key 'framework' must be one of ")
    assert all(n in msg for n in names()) and msg.endswith("got 'verl'")


@pytest.mark.parametrize("bad", ["", "Miles", "mi les", "miles;rm"])
def test_a_malformed_framework_name_is_refused_at_load(tmp_path, bad):
    with pytest.raises(UsageError, match=r"recipe.toml: key 'framework' must name a framework adapter"):
        load_recipe_dir(_recipe(tmp_path, bad))


def test_each_shipped_recipe_has_its_adapter():
    from runner.recipe import list_recipes, load_recipe

    for name in list_recipes():
        r = load_recipe(name)
        assert framework_of(r).NAME == r.framework
