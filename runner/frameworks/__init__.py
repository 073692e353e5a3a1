"""Framework adapters: what the runner must know of the trainer a recipe uses, behind one seam.

recipe.toml `framework = "<name>"` chooses the adapter; an unknown name is a usage error naming
that field (runner/recipe.py checks it at load). The registry maps names to modules, imported only
when a recipe asks, so `recipe --help` imports none of them. What an adapter provides is the
`Framework` class below (runner/frameworks/base.py); docs/adapters.md says how to add one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.frameworks.base import Framework
    from runner.recipe import Recipe

# name in recipe.toml -> module holding its ADAPTER
REGISTRY = {
    "miles": "runner.frameworks.miles",
    "trl": "runner.frameworks.trl",
    "script": "runner.frameworks.base",  # a recipe that is only its run script: no framework knowledge
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def adapter(name: str) -> Framework:
    """The adapter registered as `name`; KeyError for an unknown name (recipe.py reports it)."""
    return importlib.import_module(REGISTRY[name]).ADAPTER


def framework_of(recipe: Recipe) -> Framework:
    return adapter(recipe.framework)
