"""Launch backends: where the run script runs and how its container and Ray cluster come up.

- local:  the run script on this machine (inside the image, or wherever the stack is installed)
- docker: `docker run` of the pinned image, which runs `recipe run --backend local` inside
- slurm:  an sbatch script that brings Ray up across the allocation and runs the same inside

Each backend module exposes `preflight(launch) -> list[Check]`; docker and slurm also expose
`command(launch) -> list[str]` (what `recipe plan --backend X` shows) and `run(launch) -> int`.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

from runner.errors import UsageError
from runner.recipe import Recipe

NAMES = ("local", "docker", "slurm")


def in_image() -> bool:
    """Inside the recipe image (its Dockerfile sets RECIPE_IN_IMAGE) or a miles install at the usual place."""
    return os.environ.get("RECIPE_IN_IMAGE") == "1" or Path("/root/miles/train.py").is_file()


def resolve(requested: str, recipe: Recipe) -> str:
    """auto: inside the image -> local; in a Slurm allocation -> slurm; docker available -> docker."""
    if requested != "auto":
        if requested not in NAMES:
            raise UsageError(f"--backend must be one of auto, {', '.join(NAMES)}; got '{requested}'")
        return requested
    if in_image() or recipe.image == "none":
        return "local"
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    if shutil.which("docker"):
        return "docker"
    return "local"


def module(name: str) -> ModuleType:
    return importlib.import_module(f"runner.launch.backends.{name}")
