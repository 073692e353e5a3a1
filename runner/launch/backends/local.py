"""The local backend: preflight this machine, then run the recipe's run script here."""

from __future__ import annotations

import os
from pathlib import Path

from runner.launch import preflight as pf
from runner.launch.resolve import Launch


def check_image(launch: Launch) -> pf.Check:
    """Are we inside the pinned image (miles and friends at the pinned commits)?"""
    if launch.recipe.image == "none":
        return pf.na("image", "recipe pins no image (runs on the host's Python)")
    from runner.image import doctor  # the image self-check

    report = doctor.run_doctor(launch.recipe)
    if report.ok:
        check = pf.ok("image", "inside the pinned image: commits and versions match the lock")
    else:
        check = pf.fail("image", f"not the pinned image: {report.summary()}",
                        f"run inside {launch.recipe.image} (recipe run --backend docker, or Slurm with pyxis), "
                        "or --skip-preflight image if the stack is installed here on purpose")
    check.data = report.as_dict()  # the doctor's whole table goes into run.json
    return check


def check_inputs(launch: Launch) -> pf.Check:
    """Every input file against the recipe's sha256 manifest (sizes first, then parallel hashing)."""
    from runner.inputs import manifest as mf
    from runner.inputs.hub_pins import check_pins
    from runner.inputs.verify import default_cache, verify_manifest

    manifest = launch.recipe.path("manifest")
    check_pins(launch.recipe, mf.load(manifest), str(manifest))  # a pin edited without `recipe lock`
    if not launch.inputs_dir.is_dir():
        return pf.fail("inputs", f"inputs root {launch.inputs_dir} does not exist",
                       f"recipe fetch {launch.recipe.name} --inputs {launch.inputs_dir}")
    # files unchanged since hashed are trusted (the verified-inputs cache); run.json says which
    result = verify_manifest(manifest, launch.inputs_dir, scan_extra=None, cache=default_cache(launch.inputs_dir))
    s = result.summary()
    counts = ", ".join(f"{n} {k}" for k, n in s["counts"].items() if n)
    how = f"; {s['hashed']} hashed, {s['trusted']} trusted unchanged"
    check = pf.ok("inputs", f"{s['files']} files match {manifest.name} ({counts}{how})") if result.ok else pf.fail(
        "inputs", f"{counts} under {launch.inputs_dir}; first: {result.problems[0].path} "
                  f"({result.problems[0].status})",
        f"recipe fetch {launch.recipe.name} --inputs {launch.inputs_dir}")
    check.data = s
    return check


def check_lint(launch: Launch) -> pf.Check:
    from runner.lint import lint_recipe

    rep = lint_recipe(launch.recipe, cell=launch.cell.name, nodes=launch.nodes, gpus_per_node=launch.gpus_per_node)
    if rep.errors:
        return pf.fail("lint", f"{len(rep.errors)} error(s): {rep.errors[0]}", f"recipe lint {launch.recipe.name}")
    return pf.ok("lint", f"clean ({len(rep.warnings)} warning(s))")


def check_args(launch: Launch) -> pf.Check:
    """miles' own parser on the plan's argv and job env (runner/launch/argcheck.py)."""
    from runner.launch.argcheck import check_args as run_check

    return run_check(launch.recipe, launch.plan)


def check_packages(launch: Launch) -> pf.Check:
    """The job's interpreter has the recipe's host extras; the run script's programs are on PATH."""
    from runner.launch.packages import check_packages as run_check

    return run_check(launch.recipe, launch.plan)


def preflight(launch: Launch) -> list[pf.Check]:
    hw = launch.recipe.hardware
    need = launch.gpus_per_node
    img = launch.recipe.data.get("image", {})
    checks = {
        "lint": lambda: check_lint(launch),
        "gpus": lambda: pf.check_gpus(need, hw.get("gpu"), hw.get("min_gpu_memory_gib")),
        "driver": lambda: pf.check_driver(img.get("min_driver"), need > 0),
        "image": lambda: check_image(launch),
        "shm": lambda: pf.check_shm(hw.get("min_shm_gib", 0)),
        "disk": lambda: pf.check_disk(launch.output_dir, hw.get("min_free_disk_gib", 0)),
        "ports": lambda: pf.check_ports(launch.env),
        "inputs": lambda: check_inputs(launch),
        "args": lambda: check_args(launch),
        "packages": lambda: check_packages(launch),
    }
    if os.environ.get("RECIPE_RAY_ADDRESS"):  # joining a cluster someone else started
        checks["ports"] = lambda: pf.na("ports", f"joining Ray at {os.environ['RECIPE_RAY_ADDRESS']}")
    return pf.run_checks(checks, launch.skip)


def script(launch: Launch) -> Path:
    return launch.recipe.path("run_script")
