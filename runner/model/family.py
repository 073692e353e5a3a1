"""Find the model-family module a recipe's model belongs to; the runner itself knows no family.

A family is a package under recipes/lib/families/<name>/ (shipped with the recipes that use it),
named by recipe.toml `[model] family` or else by config.json `model_type`. It is loaded by path,
so the recipes directory needs no install. What the runner calls (docs/adapters.md):

  NAME                                   the family's name
  matches(cfg) -> bool                   config.json belongs to this family
  model_findings(model_args, cfg)        lint: the frozen model flags against config.json
  layout_rules(cfg) -> (Layout -> [str]) divisibility rules of the family's own layers
  shape(cfg) -> obj with total_params(), expert_params()   (ValueError naming the field)
  estimate_memory(shape, layout, world, MemorySettings, capacity_bytes) -> MemoryEstimate
  CALIBRATION                            one line saying what the memory model was fitted to
  provider_claims(cfg) -> [(field, value, source)]   optional: what config.json states beyond the
                                         model flags, for a framework's `model` preflight

A family may leave out the memory model (shape/estimate_memory): lint still runs its rules and
`recipe plan --gpus` says that the family has none.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import UsageError
from runner.model.parallel import Architecture
from runner.paths import recipes_dir
from runner.recipe import Recipe, read_text

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_loaded: dict[Path, ModuleType] = {}


def families_dir() -> Path:
    return recipes_dir() / "lib" / "families"


def family_name(declared: str | None, cfg: dict[str, Any] | None) -> str | None:
    """recipe.toml's `[model] family`, else config.json's model_type; None if neither says."""
    if declared:
        return declared
    mt = (cfg or {}).get("model_type")
    return mt if isinstance(mt, str) and mt else None


def load_family(name: str | None) -> ModuleType | None:
    """The family package `name`, or None when no module provides rules for it."""
    if not name or not _NAME.match(name):
        return None
    pkg = families_dir() / name
    init = pkg / "__init__.py"
    if not init.is_file():
        return None
    if init in _loaded:
        return _loaded[init]
    mod_name = f"recipe_family_{name}"  # top level: its relative imports need no parent package
    spec = importlib.util.spec_from_file_location(mod_name, init, submodule_search_locations=[str(pkg)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod  # its own relative imports resolve through this entry
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    _loaded[init] = mod
    return mod


def has_memory_model(family: ModuleType) -> bool:
    return callable(getattr(family, "shape", None)) and callable(getattr(family, "estimate_memory", None))


def no_rules(name: str | None) -> str:
    """The one sentence lint and the planner say when no family module applies."""
    if not name:
        return "no model rules: config.json has no model_type and recipe.toml names no [model] family"
    return f"no model rules for {name} (no {families_dir().name}/{name}/ module under recipes/lib)"


def family_architecture(family: Any, model_args: list[str], cfg: dict[str, Any] | None) -> Architecture:
    """Megatron's numbers from the model args, with the family's own layout rules when it has them."""
    arch = Architecture.from_model_args(model_args)
    if family is not None and cfg is not None and callable(getattr(family, "layout_rules", None)):
        arch = replace(arch, family_rules=family.layout_rules(cfg))
    return arch


def load_hf_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path, "config"))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object (a config.json)")
    return data


def recipe_hf_config_path(recipe: Recipe) -> Path:
    return recipe.path("hf_config")
