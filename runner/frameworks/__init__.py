"""Framework adapters: what the runner must know of the trainer a recipe uses, behind one seam.

recipe.toml `framework = "<name>"` chooses the adapter; an unknown name is a usage error naming
that field, raised by framework_of() (the recipe loader, a layer below, checks only its form).
The registry maps names to modules, imported only when a recipe asks, so `recipe --help` imports
none of them. What an adapter provides is the `Framework` class (runner/frameworks/base.py);
docs/adapters.md says how to add one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.recipe import framework_table

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
    """The adapter registered as `name`; KeyError for an unknown name."""
    return importlib.import_module(REGISTRY[name]).ADAPTER


def framework_of(recipe: Recipe) -> Framework:
    """The recipe's adapter; a usage error naming recipe.toml's `framework` key if none is registered,
    or a key of its [<framework>] table that the adapter's schema does not know."""
    if recipe.framework not in REGISTRY:
        raise UsageError(f"{recipe.dir / 'recipe.toml'}: key 'framework' must be one of {', '.join(REGISTRY)}, "
                         f"got {recipe.framework!r}")
    fw = adapter(recipe.framework)
    framework_table(recipe, fw.TABLE)
    return fw


def options_of(recipe: Recipe) -> Any:
    """The recipe's [<framework>] table, typed by its adapter's schema."""
    return framework_table(recipe, framework_of(recipe).TABLE)
