"""Launch backends: where the run script runs and how its container and Ray cluster come up.

- local:  the run script on this machine (inside the image, or wherever the stack is installed)
- docker: `docker run` of the pinned image, which runs `recipe run --backend local` inside
- slurm:  an sbatch script that brings Ray up across the allocation and runs the same inside

Each backend is a module with the members of `Backend` below; `backend(name)` returns it.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from runner.errors import UsageError
from runner.recipe import Recipe

if TYPE_CHECKING:
    from runner.launch.preflight import Check
    from runner.launch.resolve import Launch

NAMES = ("local", "docker", "slurm")


class Backend(Protocol):
    NAME: str
    # True: run() starts an inner `recipe run --backend local` (in a container or an allocation) that
    # writes run.json itself; the outer run only notes the wrapper in launcher.json.
    WRAPS_INNER_RUN: bool

    def checks(self, launch: Launch | None) -> dict[str, Callable[[], Check]]:
        """Its preflight checks by name, not yet run (checks(None) lists the names: nothing is evaluated)."""

    def commands(self, launch: Launch) -> list[list[str]]:
        """What run() would execute, for the dry run and for "cannot run" reports."""

    def run(self, launch: Launch, on_start: Callable[[int], None] | None = None,
            on_interrupt: Callable[[str], None] | None = None) -> tuple[int, bool]:
        """Run it in the foreground; (exit code, interrupted). on_start(pid) once the child runs;
        on_interrupt(why) says what ended it early (a signal, stdout closed)."""


def backend(name: str) -> Backend:
    if name not in NAMES:
        raise UsageError(f"--backend must be one of auto, {', '.join(NAMES)}; got '{name}'")
    return cast(Backend, importlib.import_module(f"runner.launch.backends.{name}"))


def preflight(launch: Launch) -> list[Check]:
    """Run the launch's backend checks, minus those --skip-preflight names."""
    from runner.launch import preflight as pf

    return pf.run_checks(backend(launch.backend).checks(launch), launch.skip)


def check_names(name: str) -> tuple[str, ...]:
    return tuple(backend(name).checks(None))


def skippable() -> tuple[str, ...]:
    """Every check name some backend runs: what `--skip-preflight` accepts."""
    return tuple(dict.fromkeys(n for b in NAMES for n in check_names(b)))


def in_image() -> bool:
    """Inside the recipe image (its Dockerfile sets RECIPE_IN_IMAGE) or a framework installed where its
    image puts it (each adapter knows where: runner/frameworks/)."""
    if os.environ.get("RECIPE_IN_IMAGE") == "1":
        return True
    from runner.frameworks import adapter, names

    return any(adapter(n).installed_here() for n in names())


def resolve(requested: str, recipe: Recipe) -> str:
    """auto: inside the image -> local; in a Slurm allocation -> slurm; docker available -> docker."""
    if requested != "auto":
        return backend(requested).NAME
    if in_image() or recipe.image == "none":
        return "local"
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    if shutil.which("docker"):
        return "docker"
    return "local"
