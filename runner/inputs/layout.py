"""Where a recipe's inputs (model weights, data) live: one root with a fixed layout.

    <inputs root>/<model.dir>/...        the model repo at the pinned revision
    <inputs root>/<data.dir>/<data.file> the data set file

The recipe's checksum manifest lists paths relative to this root, so
`cd <root> && sha256sum -c --strict <manifest>` checks everything with a stock tool.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.paths import user_path
from runner.recipe import Recipe


def inputs_root(recipe: Recipe, override: str | os.PathLike | None = None) -> Path:
    """--inputs DIR > $RECIPE_INPUTS_DIR > the recipe's [inputs] root > ./inputs/<recipe name>.

    A relative [inputs] root in recipe.toml is relative to the recipe directory (a recipe can ship
    its own small inputs); everything else is relative to the current directory.
    """
    if override:
        return user_path(override, "--inputs")
    env = os.environ.get("RECIPE_INPUTS_DIR")
    if env:
        return user_path(env, "RECIPE_INPUTS_DIR")
    shipped = recipe.inputs_root
    if shipped:
        return (recipe.dir / shipped).resolve()
    return (Path.cwd() / "inputs" / recipe.name).resolve()


def model_dir(recipe: Recipe, root: Path) -> Path:
    return root / recipe.model.dir


def data_dir(recipe: Recipe, root: Path) -> Path:
    return root / recipe.dataset.dir
