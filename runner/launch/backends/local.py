"""The local backend: preflight this machine, then run the launch's rendered script here."""

from __future__ import annotations

from collections.abc import Callable

from runner.checks import Check, fail, na, ok
from runner.launch.preflight import check_ports, check_shm, host_checks
from runner.launch.progress import Progress
from runner.launch.script import run_script
from runner.launch.watch import Match, watcher_for
from runner.plan.spec import Launch

NAME = "local"
RUNS_EXEC = False


def job_view(run_id: str) -> None:
    return None  # the job runs here


def check_image(launch: Launch) -> Check:
    """Are we inside the pinned image (the framework and its stack at the pinned commits)?"""
    if launch.recipe.image == "none":
        return na("image", "recipe pins no image (runs on the host's Python)")
    from runner import doctor  # the image self-check

    report = doctor.run_doctor(launch.recipe)
    if report.ok:
        check = ok("image", "inside the pinned image: commits and versions match the lock")
    else:
        check = fail("image", f"not the pinned image: {report.summary()}",
                        f"run inside {launch.recipe.image} (recipe run --backend docker, or Slurm with pyxis), "
                        "or --skip-preflight image if the stack is installed here on purpose")
    check.data = report.as_dict()  # the doctor's whole table goes into run.json
    return check


def framework_check(name: str, launch: Launch) -> Check:
    """A check the recipe's framework adapter owns (runner/frameworks/): `args`, `model`, `packages`."""
    from runner.frameworks import framework_of

    check = framework_of(launch.recipe).preflight_check(name, launch)
    return check if check is not None else na(name, f"framework {launch.recipe.framework!r} has no {name} check")


def checks(launch: Launch | None) -> dict[str, Callable[[], Check]]:
    host = host_checks(launch)
    return {
        "lint": host["lint"],
        "gpus": host["gpus"],
        "driver": host["driver"],
        "image": lambda: check_image(launch),
        "shm": lambda: check_shm(launch.recipe.hardware.min_shm_gib),
        "disk": host["disk"],
        "ports": lambda: check_ports(launch.script_env),
        "inputs": host["inputs"],
        "args": lambda: framework_check("args", launch),
        "model": lambda: framework_check("model", launch),
        "packages": lambda: framework_check("packages", launch),
    }


def commands(launch: Launch) -> list[list[str]]:
    return launch.plan.commands


def run(launch: Launch, on_start: Callable[[int], None] | None = None,
        on_interrupt: Callable[[str], None] | None = None,
        on_failure: Callable[[Match], None] | None = None) -> tuple[int, bool]:
    """Run the script rendered into the run directory (run.sh, beside plan.json): it exports the plan's
    variables itself."""
    return run_script(launch.run_dir / "run.sh", {}, launch.run_dir / "logs" / "run.log",
                      on_start=on_start, on_interrupt=on_interrupt, on_failure=on_failure,
                      watcher=watcher_for(launch.recipe.framework), tool_log=True, verbose=launch.verbose,
                      progress=Progress.of(launch))
