"""docker/image.lock: what the recipe image holds (base image, source commits, package versions).

Read by `recipe doctor` (runner/doctor.py) to compare a container with it, and by the docker
backend to know the base image a recipe image is built on. RECIPE_IMAGE_LOCK names another lock.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.paths import bundle_root


def lock_path(recipe=None) -> Path:
    env = os.environ.get("RECIPE_IMAGE_LOCK")
    if env:
        return Path(env)
    rel = (recipe.image_pin.lock if recipe is not None else None) or "docker/image.lock"
    return bundle_root() / rel


def load_lock(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"{path}: cannot read the image lock ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
