"""Checks before a launch: each names what is wrong and how to fix it.

A check returns a Check (runner/checks.py) with a CheckStatus. `--skip-preflight NAME`
turns a check into SKIPPED (recorded in run.json) for people who know better.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from runner import hostinfo
from runner.checks import Check, fail, na, ok
from runner.launch.disk import check_disk
from runner.launch.ports import SPAN, ports_in_use


def host_checks(launch) -> dict[str, Callable[[], Check]]:
    """The checks every backend runs on the machine it launches from, in the order they print.

    Lazy: nothing touches `launch` until a check runs, so host_checks(None) lists the names.
    """
    hw = lambda: launch.recipe.hardware  # noqa: E731
    return {
        "lint": lambda: check_lint(launch),
        "gpus": lambda: check_gpus(launch.gpus_per_node, hw().gpu, hw().min_gpu_memory_gib),
        "driver": lambda: check_driver(launch.recipe.image_pin.min_driver, launch.gpus_per_node > 0),
        "disk": lambda: check_disk(launch.recipe, launch.output_dir, launch.run_dir.parent),
        "inputs": lambda: check_inputs(launch),
    }


# ---- individual checks -------------------------------------------------------------------

def check_inputs(launch) -> Check:
    """Every input file against the recipe's sha256 manifest (sizes first, then parallel hashing)."""
    from runner.inputs import manifest as mf
    from runner.inputs.hub_pins import check_pins
    from runner.inputs.verify import default_cache, verify_manifest

    manifest = launch.recipe.path("manifest")
    check_pins(launch.recipe, mf.load(manifest), str(manifest))  # a pin edited without `recipe lock`
    if not launch.inputs_dir.is_dir():
        return fail("inputs", f"inputs root {launch.inputs_dir} does not exist",
                    f"recipe fetch {launch.recipe.name} --inputs {launch.inputs_dir}")
    # files unchanged since hashed are trusted (the verified-inputs cache); run.json says which
    result = verify_manifest(manifest, launch.inputs_dir, scan_extra=None, cache=default_cache(launch.inputs_dir),
                             rehash=launch.rehash)
    s = result.summary()
    counts = ", ".join(f"{n} {k}" for k, n in s["counts"].items() if n)
    how = f"; {s['hashed']} hashed, {s['trusted']} trusted unchanged"
    check = ok("inputs", f"{s['files']} files match {manifest.name} ({counts}{how})") if result.ok else fail(
        "inputs", f"{counts} under {launch.inputs_dir}; first: {result.problems[0].path} "
                  f"({result.problems[0].status})",
        f"recipe fetch {launch.recipe.name} --inputs {launch.inputs_dir}")
    check.data = s
    return check


def check_lint(launch) -> Check:
    from runner.lint import fix, launch_lint, sentence

    # The launch's own plan: lint judges exactly the argv this run starts (seeds, --deterministic, ...),
    # never a second rendering from the environment.
    rep = launch_lint(launch.options, launch.plan.argv)
    if rep.errors:
        first = rep.errors[0]
        return fail("lint", f"{len(rep.errors)} error(s): {sentence(first)}",
                    fix(launch.recipe.name, first, launch.nodes * launch.gpus_per_node))
    return ok("lint", f"clean ({len(rep.warnings)} warning(s))")


def check_gpus(need_per_node: int, model: str | None, min_mem_gib: float | None) -> Check:
    if need_per_node == 0:
        return na("gpus", "recipe needs no GPU")
    gpus = hostinfo.gpus()
    want = f"{need_per_node} x {model or 'GPU'}"
    if not gpus:
        how = "nvidia-smi not found" if not shutil.which("nvidia-smi") else "nvidia-smi lists no GPU"
        return fail("gpus", f"{how}: this machine has no usable NVIDIA GPU (need {want})",
                    f"run on a node with {want} and the NVIDIA driver installed")
    if len(gpus) < need_per_node:
        return fail("gpus", f"{len(gpus)} GPU(s) visible, need {want}",
                    "run on a full node, or pick a cell/--gpus-per-node that fits (recipe plan NAME --gpus N)")
    names = {g["name"] for g in gpus}
    # recipe.toml's `gpu` may name alternatives verified alike: "H100/H200".
    models = [m.strip() for m in (model or "").split("/") if m.strip()]
    if models and not all(any(m in n for m in models) for n in names):
        return fail("gpus", f"GPUs are {', '.join(sorted(names))}, the recipe was verified on {model}",
                    f"run on {model} nodes, or --skip-preflight gpus to try anyway")
    if min_mem_gib:
        small = [g for g in gpus if float(g["memory_mib"]) / 1024 < min_mem_gib]
        if small:
            return fail("gpus", f"GPU memory {small[0]['memory_mib']} MiB < {min_mem_gib} GiB needed",
                        "use GPUs with more memory")
    return ok("gpus", f"{len(gpus)} x {gpus[0]['name']}")


def check_driver(min_driver: int | None, need_gpus: bool) -> Check:
    if not need_gpus or not min_driver:
        return na("driver", "no driver requirement")
    gpus = hostinfo.gpus()
    if not gpus:
        return fail("driver", "no NVIDIA driver found", f"install NVIDIA driver R{min_driver} or newer")
    major = int(gpus[0]["driver"].split(".")[0])
    if major < min_driver:
        return fail("driver", f"driver {gpus[0]['driver']} is older than R{min_driver} (the image's CUDA needs it)",
                    f"upgrade the host driver to R{min_driver}+, or use the image's CUDA 12.9 variant")
    return ok("driver", f"driver {gpus[0]['driver']} >= R{min_driver}")


def check_shm(min_gib: float) -> Check:
    if not min_gib:
        return na("shm", "no /dev/shm requirement")
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return fail("shm", "/dev/shm is missing", "mount a tmpfs on /dev/shm (docker: --ipc=host or --shm-size)")
    gib = st.f_frsize * st.f_blocks / 2**30
    if gib < min_gib:
        return fail("shm", f"/dev/shm is {gib:.1f} GiB, need {min_gib:g} GiB (NCCL and Ray use it)",
                    "docker: --ipc=host or --shm-size=32g; Slurm/enroot: a bigger /dev/shm on the node")
    return ok("shm", f"/dev/shm {gib:.0f} GiB")


def check_ports(env: dict[str, str]) -> Check:
    """The run's Ray port block (launch_env gives a base, or the address of a cluster to join) is free."""
    if "RECIPE_RAY_PORT_BASE" not in env:
        return na("ports", f"joining Ray at {env.get('RECIPE_RAY_ADDRESS', '(no address)')}: no ports of its own")
    base = int(env["RECIPE_RAY_PORT_BASE"])
    last = base + SPAN - 1
    busy = ports_in_use(base)
    if busy:
        shown = ", ".join(map(str, busy[:8])) + (f" and {len(busy) - 8} more" if len(busy) > 8 else "")
        return fail("ports", f"Ray ports {base}..{last}: in use: {shown}",
                    "retry (each run picks a free block), or end the process holding them")
    return ok("ports", f"Ray ports {base}..{last} free")
