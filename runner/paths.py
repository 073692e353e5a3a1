"""Where the bundle's files live: a source checkout, or a copy installed in an image."""

from __future__ import annotations

import os
from pathlib import Path


def bundle_root() -> Path:
    """The directory holding `recipes/`.

    RECIPE_BUNDLE_ROOT wins (the image sets it); otherwise the checkout this package sits in.
    """
    env = os.environ.get("RECIPE_BUNDLE_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def recipes_dir() -> Path:
    return bundle_root() / "recipes"


def launch_lib() -> Path:
    """The Ray lifecycle every rendered run script sources."""
    return recipes_dir() / "lib" / "launch.sh"


def user_path(p: str | os.PathLike, what: str) -> Path:
    """A path a user typed, `~` expanded and made absolute; `~nobody` is a usage error, not a crash."""
    try:
        return Path(p).expanduser().resolve()
    except RuntimeError as e:  # pathlib: "Could not determine home directory"
        from runner.errors import UsageError

        raise UsageError(f"{what} {str(p)!r}: cannot expand '~' ({e})") from None
