"""Launch backends: where the run script runs and how its container and Ray cluster come up.

- local:  the run script on this machine (inside the image, or wherever the stack is installed)
- docker: `docker run` of the pinned image, which runs `recipe exec RUN_DIR` inside
- slurm:  an sbatch script that brings Ray up across the allocation and runs the same on its head node

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
    from runner.checks import Check
    from runner.launch.watch import Match
    from runner.plan.spec import JobView, Launch

NAMES = ("local", "docker", "slurm")


class Backend(Protocol):
    NAME: str
    # True: run() starts `recipe exec RUN_DIR` where the job runs (a container, an allocation's head
    # node), which runs the in-image checks and run.sh and finishes this run's one run.json.
    RUNS_EXEC: bool

    def job_view(self, run_id: str) -> JobView | None:
        """Where the job sees its files if not where this host does (docker's mounts); the plan is
        rendered with these."""

    def checks(self, launch: Launch | None) -> dict[str, Callable[[], Check]]:
        """Its preflight checks by name, not yet run (checks(None) lists the names: nothing is evaluated)."""

    def describe(self, launch: Launch) -> tuple[dict, str]:
        """A RUNS_EXEC backend only: for `recipe plan --backend NAME`, the fields it adds to the JSON
        plan and the text it prints (what runs around the run script)."""

    def commands(self, launch: Launch) -> list[list[str]]:
        """What run() would execute, for the dry run and for "cannot run" reports."""

    def run(self, launch: Launch, on_start: Callable[[int], None] | None = None,
            on_interrupt: Callable[[str], None] | None = None,
            on_failure: Callable[[Match], None] | None = None) -> tuple[int, bool]:
        """Run it in the foreground; (exit code, interrupted). on_start(pid) once the child runs;
        on_interrupt(why) says what ended it early (a signal, stdout closed); on_failure(match): its
        log showed a line runner/launch/watch.py knows to be fatal, and it ended the script (a
        RUNS_EXEC backend never calls it: `recipe exec` watches the log where the job runs)."""


def backend(name: str) -> Backend:
    if name not in NAMES:
        raise UsageError(f"--backend must be one of auto, {', '.join(NAMES)}; got '{name}'")
    return cast(Backend, importlib.import_module(f"runner.launch.backends.{name}"))


def preflight(launch: Launch) -> list[Check]:
    """Run the launch's backend checks, minus those --skip-preflight names."""
    from runner.checks import run_checks

    return run_checks(backend(launch.backend).checks(launch), launch.skip)


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


def resolve(requested: str, recipe: Recipe, notes: list[str] | None = None) -> str:
    """auto: inside the image -> local; in a Slurm allocation -> slurm; a docker daemon that answers ->
    docker; else local. Why auto passed over docker goes into `notes`, for the refusal to say."""
    if requested != "auto":
        return backend(requested).NAME
    if in_image() or recipe.image == "none":
        return "local"
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm"
    why = docker_unusable()
    if why is None:
        return "docker"
    if notes is not None:
        notes.append(f"--backend auto chose local, not docker: {why}")
    return "local"


DAEMON_PROBE_S = 5.0


def docker_unusable() -> str | None:
    """None if a docker daemon answers `docker version` within DAEMON_PROBE_S; else why not. A CLI
    alone is not enough: with no daemon, the docker backend could only fail its preflight."""
    import subprocess

    from runner.launch.backends.docker import docker_bin

    exe = docker_bin()
    if not shutil.which(exe):
        return f"no docker CLI ('{exe}') on PATH"
    try:
        p = subprocess.run([exe, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                           timeout=DAEMON_PROBE_S, check=False)
    except subprocess.TimeoutExpired:
        return f"the docker daemon did not answer `{exe} version` within {DAEMON_PROBE_S:g} s"
    except OSError as e:
        return f"cannot run '{exe}' ({e.strerror})"
    if p.returncode != 0 or not p.stdout.strip():
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return f"the docker daemon does not answer ({last[:200]})"
    return None
