"""The tag manifest of a recipe (BagIt's tagmanifest): sha256 of the recipe's own files.

It covers every file in the recipe directory (recipe.toml, model_args.txt, run.sh,
expected_metrics.toml, hf_config.json, the inputs manifest, ...) and the shared recipes/lib files
the run scripts source, with paths relative to the recipes directory:

    cd recipes && sha256sum -c --strict NAME/recipe.sha256

so a copy of the recipe inside an image can be checked for edits. Regenerate with
`recipe lock NAME --recipe-files` after editing any recipe file.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.inputs import manifest as mf
from runner.inputs.verify import hash_file
from runner.recipe import Recipe

DEFAULT_NAME = "recipe.sha256"
SHARED_DIRS = ("lib",)  # under recipes/: sourced by every run script
_SKIP_DIRS = {"__pycache__", ".pytest_cache"}


def tag_manifest_path(recipe: Recipe) -> Path:
    return recipe.dir / recipe.files.get("recipe_manifest", DEFAULT_NAME)


def covered_files(recipe: Recipe) -> tuple[list[str], list[str]]:
    """(files to cover, relative to the recipes dir; files recipe.toml [files] names that are absent)."""
    recipes = recipe.dir.parent
    own = tag_manifest_path(recipe)
    found: set[str] = set()
    for base in [recipe.dir, *(recipes / d for d in SHARED_DIRS)]:
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            for name in filenames:
                p = Path(dirpath) / name
                if name.startswith(".") or name.endswith((".pyc", "~")) or p == own:
                    continue
                found.add(p.relative_to(recipes).as_posix())
    missing = sorted(f"{recipe.name}/{rel}" for key, rel in recipe.files.items()
                     if key != "recipe_manifest" and not (recipe.dir / rel).is_file())
    return sorted(found), missing


def build(recipe: Recipe) -> tuple[mf.Manifest, list[str]]:
    recipes = recipe.dir.parent
    paths, missing = covered_files(recipe)
    entries = []
    for rel in paths:
        digest, size = hash_file(recipes / rel)
        entries.append(mf.Entry(rel, digest, size))
    comments = [
        f"Tag manifest of recipe {recipe.name}: its own files and the shared recipes/lib files.",
        f"Check: cd recipes && sha256sum -c --strict {recipe.name}/{tag_manifest_path(recipe).name}"
        f"   (or: recipe verify {recipe.name} --recipe-files)",
        f"Regenerate after editing a recipe file: recipe lock {recipe.name} --recipe-files",
    ]
    return mf.Manifest(header={"recipe": recipe.name}, entries=entries, comments=comments), missing


def write(recipe: Recipe) -> tuple[bool, list[str]]:
    """Rewrite the tag manifest; (whether it changed, files [files] names that are absent)."""
    m, missing = build(recipe)
    path = tag_manifest_path(recipe)
    text = mf.render(m)
    old = path.read_text() if path.is_file() else None
    if old != text:
        mf.write(m, path)
    return old != text, missing


def stale(recipe: Recipe) -> list[str]:
    """Differences between the committed tag manifest and the files; [] when it is current."""
    path = tag_manifest_path(recipe)
    if not path.is_file():
        return [f"{path} does not exist"]
    old = mf.load(path).by_path()
    new = build(recipe)[0].by_path()
    out = []
    for p in sorted(set(old) | set(new)):
        if p not in old:
            out.append(f"{p}: not covered")
        elif p not in new:
            out.append(f"{p}: listed but gone")
        elif (old[p].sha256, old[p].size) != (new[p].sha256, new[p].size):
            out.append(f"{p}: edited since the tag manifest was written")
    return out
