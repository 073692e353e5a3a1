"""The docker backend: `docker run` of the pinned image, which runs `recipe run --backend local` inside.

Host paths are mounted at fixed places, so the inner run is the same whatever the host layout:

    <inputs>             -> /recipe/inputs            read-only
    <output dir>         -> /recipe/output
    <run dir>/container  -> /recipe/run/<run id>      the inner run's record, logs, metrics, gate

The image is RECIPE_IMAGE if set, else the recipe's [image] reference; either way it must be pinned
by digest. Secrets go in by name only (`-e WANDB_API_KEY`), so their values never reach argv.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from runner.launch import preflight as pf
from runner.launch.resolve import Launch

INPUTS, OUTPUT, RUN_ROOT = "/recipe/inputs", "/recipe/output", "/recipe/run"
ENTRYPOINT = "/usr/local/bin/recipe"
IMAGE_TITLE = "recipe-bundle"  # org.opencontainers.image.title of images docker/Dockerfile builds
SCRIPT_NAME = "docker_run.sh"
# Upstream's container flags (facts: launch mechanics), minus --gpus which depends on the recipe.
RUN_FLAGS = ["--ipc=host", "--shm-size=32g", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864",
             "--network=host"]
# Inner preflight checks a skip may be forwarded to (the outer-only ones stay outside).
INNER_SKIPPABLE = {"lint", "gpus", "driver", "image", "shm", "disk", "ports", "inputs"}


def docker_bin() -> str:
    return os.environ.get("RECIPE_DOCKER", "docker")


def run_flags(environ: dict[str, str]) -> list[str]:
    """RECIPE_DOCKER_MEMLOCK=host drops `--ulimit memlock=-1` where the host forbids raising the
    locked-memory limit (some sandboxes deny it even to root); the run script records which applied."""
    if environ.get("RECIPE_DOCKER_MEMLOCK") == "host":
        i = RUN_FLAGS.index("memlock=-1")
        return RUN_FLAGS[:i - 1] + RUN_FLAGS[i + 1:]
    return list(RUN_FLAGS)


def image_ref(launch: Launch) -> str:
    return os.environ.get("RECIPE_IMAGE") or launch.image


def pinned(ref: str) -> bool:
    return "@sha256:" in ref and len(ref.rsplit("@sha256:", 1)[1]) == 64


def container_name(launch: Launch) -> str:
    return f"recipe-{launch.run_id}"


def inner_run_dir(launch: Launch) -> Path:
    """Where the inner run's directory lands on the host."""
    return Path(launch.run_dir) / "container"


def inner_args(launch: Launch) -> list[str]:
    args = ["run", launch.recipe.name, "--backend", "local", "--run-dir", f"{RUN_ROOT}/{launch.run_id}",
            "--inputs", INPUTS, "--output-dir", OUTPUT, *launch.forward_args]
    for name in sorted(launch.skip & INNER_SKIPPABLE):
        args += ["--skip-preflight", name]
    return args


def command(launch: Launch, environ: dict[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    ref = image_ref(launch)
    # --init: a real PID 1 reaps the Ray processes the run script stops; without it they linger as
    # zombies of the runner and the script's shutdown waits out its grace period for nothing.
    argv = [docker_bin(), "run", "--rm", "--init", "--name", container_name(launch)]
    if launch.gpus_per_node > 0:
        argv += ["--gpus", "all"]
    argv += run_flags(environ)
    argv += ["-v", f"{launch.inputs_dir}:{INPUTS}:ro",
             "-v", f"{launch.output_dir}:{OUTPUT}",
             "-v", f"{inner_run_dir(launch)}:{RUN_ROOT}/{launch.run_id}"]
    for name in launch.secret_names:
        if environ.get(name):
            argv += ["-e", name]  # by name: docker copies the value from our environment
    argv += ["-e", f"RECIPE_IMAGE={ref}", "--entrypoint", ENTRYPOINT, ref, *inner_args(launch)]
    return argv


def script_text(launch: Launch) -> str:
    """The exact command as a script: the run directory keeps what ran (names of secrets only)."""
    return ("#!/usr/bin/env bash\n# Written by `recipe run --backend docker`; runs the pinned image.\n"
            "set -euo pipefail\n" + f"exec {shlex.join(command(launch))}\n")


def run(launch: Launch) -> tuple[int, bool]:
    """Run the container in the foreground; SIGINT/SIGTERM reach the inner runner through docker's
    signal proxy, so the inner run script's trap stops its Ray job before the container exits."""
    from runner.atomicfile import write_text_atomic
    from runner.launch.script import run_script

    for d in (launch.output_dir, inner_run_dir(launch)):
        Path(d).mkdir(parents=True, exist_ok=True)
    script = Path(launch.run_dir) / SCRIPT_NAME
    write_text_atomic(script, script_text(launch))
    return run_script(script, {}, Path(launch.run_dir) / "logs" / "docker.log")


# ---- preflight ---------------------------------------------------------------------------

def _docker(*args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([docker_bin(), *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_docker(launch: Launch) -> pf.Check:
    exe = docker_bin()
    if not shutil.which(exe):
        return pf.fail("docker", f"docker CLI '{exe}' not found on PATH",
                       "install Docker (apt-get install docker.io) or set RECIPE_DOCKER to its path")
    p = _docker("info", "--format", "{{json .}}")
    if p is None or p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["no answer"])[-1] if p else "no answer within 30 s"
        return pf.fail("docker", f"docker daemon not reachable: {why}",
                       "start dockerd (or set DOCKER_HOST to a running engine's socket)")
    info = json.loads(p.stdout or "{}")
    detail = f"engine {info.get('ServerVersion', '?')} ({info.get('Driver', '?')} storage)"
    if launch.gpus_per_node > 0:
        runtimes = set((info.get("Runtimes") or {}).keys())
        hook = shutil.which("nvidia-container-runtime-hook") or shutil.which("nvidia-container-cli")
        if "nvidia" not in runtimes and not hook:
            return pf.fail("docker", f"{detail} has no NVIDIA runtime (runtimes: {', '.join(sorted(runtimes))})",
                           "install nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`")
        detail += ", NVIDIA runtime present"
    return pf.ok("docker", detail)


def check_image(launch: Launch) -> pf.Check:
    ref = image_ref(launch)
    if ref in ("", "none"):
        return pf.fail("image", f"recipe {launch.recipe.name} pins no image",
                       "set RECIPE_IMAGE=<registry/name@sha256:...> (an image built by docker/image.sh)")
    if not pinned(ref):
        return pf.fail("image", f"image '{ref}' is not pinned by digest",
                       "use NAME@sha256:<64 hex> (tags move; `docker/image.sh push` prints the digest ref)")
    p = _docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref)
    if p is not None and p.returncode == 0:
        labels = json.loads(p.stdout or "null") or {}
        if labels.get("org.opencontainers.image.title") != IMAGE_TITLE:
            return pf.fail("image", f"{ref} is present but has no recipe runner (not built from docker/Dockerfile)",
                           "build the recipe image on it: docker/image.sh build TAG BASE_REF, then push it")
        return pf.ok("image", f"present locally: {ref} (bundle {labels.get('org.opencontainers.image.revision', '?')})")
    p = _docker("manifest", "inspect", "--insecure", ref, timeout=60)
    if p is not None and p.returncode == 0:
        return pf.ok("image", f"pullable: {ref} (docker run pulls it)")
    why = (p.stderr.strip().splitlines() or ["no answer"])[-1] if p else "no answer"
    return pf.fail("image", f"{ref} is neither present nor pullable: {why}",
                   "docker login to its registry, or load the image (docker/image.sh build + push)")


def preflight(launch: Launch) -> list[pf.Check]:
    from runner.launch.backends import local

    hw = launch.recipe.hardware
    need = launch.gpus_per_node
    img = launch.recipe.data.get("image", {})
    checks = {
        "lint": lambda: local.check_lint(launch),
        "docker": lambda: check_docker(launch),
        "image": lambda: check_image(launch),
        "gpus": lambda: pf.check_gpus(need, hw.get("gpu"), hw.get("min_gpu_memory_gib")),
        "driver": lambda: pf.check_driver(img.get("min_driver"), need > 0),
        "disk": lambda: pf.check_disk(launch.output_dir, hw.get("min_free_disk_gib", 0)),
        "inputs": lambda: local.check_inputs(launch),
    }
    return pf.run_checks(checks, launch.skip)
