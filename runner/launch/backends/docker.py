"""The docker backend: `docker run` of the pinned image, which runs `recipe exec RUN_DIR` inside.

Host paths are mounted at fixed places, and the plan (plan.json, run.sh) is rendered with those, so
the job is the same whatever the host layout:

    <inputs>             -> /recipe/inputs            read-only
    <output dir>         -> /recipe/output
    <run dir>            -> /recipe/run/<run id>      plan.json, run.sh, run.json, logs, metrics, gate

The image is the launch's (--image, else $RECIPE_IMAGE, else the recipe's [image] reference); it must
be pinned by digest. What runs is a recipe image of this bundle (runner/image/recipe_image.py): the image
itself if its labels say it is one, else (a base, e.g. the pinned miles image) the recipe image built
on it for this bundle's content, `recipe-bundle-auto:<key>`, reused when this engine has it. Secrets
go in by name only (`-e WANDB_API_KEY`), so their values never reach argv.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from runner.atomicfile import write_text_atomic
from runner.checks import Check, fail, ok
from runner.errors import EXIT_PREFLIGHT, UsageError
from runner.image import recipe_image as ri
from runner.image.ref import is_pinned
from runner.image.registry import RegistryError
from runner.launch.preflight import host_checks
from runner.launch.sbatch import IMAGE_BUNDLE_DIR
from runner.launch.script import run_script
from runner.paths import bundle_root
from runner.plan.options import FORWARDED_ENV
from runner.plan.spec import JobView, Launch
from runner.records.record import write_json_atomic

NAME = "docker"
RUNS_EXEC = True

INPUTS, OUTPUT, RUN_ROOT = "/recipe/inputs", "/recipe/output", "/recipe/run"
ENTRYPOINT = "/usr/local/bin/recipe"
IMAGE_TITLE = "recipe-bundle"  # org.opencontainers.image.title of images docker/Dockerfile builds
SCRIPT_NAME = "docker_run.sh"
IMAGE_RECORD = "image.json"  # in the run directory: which recipe image ran, built or reused, on which base
# Job settings of the host that must reach the job inside the container (by name, when set).
# Host IPC and a 32 GB /dev/shm for NCCL and Ray's object store, unlimited locked memory for RDMA
# registration, a 64 MiB stack, the host network for Ray's ports; --gpus depends on the recipe.
RUN_FLAGS = ["--ipc=host", "--shm-size=32g", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864",
             "--network=host"]


def docker_bin() -> str:
    return os.environ.get("RECIPE_DOCKER", "docker")


def run_flags(environ: dict[str, str]) -> list[str]:
    """RECIPE_DOCKER_MEMLOCK=host drops `--ulimit memlock=-1` where the host forbids raising the
    locked-memory limit (some sandboxes deny it even to root); the run script records which applied."""
    if environ.get("RECIPE_DOCKER_MEMLOCK") == "host":
        i = RUN_FLAGS.index("memlock=-1")
        return RUN_FLAGS[:i - 1] + RUN_FLAGS[i + 1:]
    return list(RUN_FLAGS)


@dataclass
class ImageChoice:
    configured: str  # what the launch names: the recipe's pin or --image / RECIPE_IMAGE
    kind: str  # ri.THIS | ri.OTHER | ri.BASE, or "unknown" (labels not read)
    bundle: str  # this checkout's bundle digest
    run_ref: str  # what `docker run` runs
    facts: ri.ImageFacts | None = None  # the configured image's labels, where read
    built: ri.ImageFacts | None = None  # the recipe image built on it earlier, if this engine has it


# The launch keeps the choice its preflight made (labels read), so the commands shown afterwards are the ones run.
CHOICE_KEY = "docker.image"


def known_bases(launch: Launch) -> set[str]:
    """Images that are bases by construction: the recipe's pin and the image lock's base."""
    from runner.image.lock import load_lock, lock_path

    bases = {launch.recipe.image}
    try:
        bases.add(load_lock(lock_path(launch.recipe)).get("base", {}).get("reference", ""))
    except Exception:  # noqa: BLE001 - no readable lock: the pin alone
        pass
    return bases


def choose_image(launch: Launch, probe: bool = True) -> ImageChoice:
    """probe: read the image's labels (this engine, else its registry). Without probing, a choice made
    by preflight, else the static rule: the recipe's pin is a base; an --image is taken as given."""
    ref = launch.image
    bundle = ri.bundle_digest(bundle_root())
    if not probe:
        made = launch.found.get(CHOICE_KEY)
        if made is not None and (made.configured, made.bundle) == (ref, bundle):
            return made
        if ref in known_bases(launch):
            return ImageChoice(ref, "unknown", bundle, ri.auto_tag(bundle, ref))
        return ImageChoice(ref, "unknown", bundle, ref)
    facts = ri.lookup(docker_bin(), ref)
    k = ri.kind(facts.labels, bundle)
    choice = ImageChoice(ref, k, bundle, ref, facts)
    if k == ri.BASE:
        choice.built = ri.find_built(docker_bin(), bundle, ref)
        choice.run_ref = ri.auto_tag(bundle, ref)
    launch.found[CHOICE_KEY] = choice
    return choice


def container_name(launch: Launch) -> str:
    return f"recipe-{launch.run_id}"


def job_view(run_id: str) -> JobView:
    return JobView(inputs_dir=Path(INPUTS), output_dir=Path(OUTPUT), run_dir=Path(RUN_ROOT) / run_id,
                   bundle=Path(IMAGE_BUNDLE_DIR))


def exec_args(launch: Launch) -> list[str]:
    """What the container runs: the frozen plan in its (mounted) run directory, and nothing else."""
    return ["exec", f"{RUN_ROOT}/{launch.run_id}"]


def check_mounts(launch: Launch) -> None:
    """`docker run -v SRC:DST[:MODE]` splits on ':' (and --mount on ','): such a path would mount something else."""
    for what, path in (("--inputs", launch.inputs_dir), ("--output-dir", launch.output_dir),
                       ("run directory", launch.run_dir)):
        if any(c in str(path) for c in ":,"):
            raise UsageError(f"{what} {str(path)!r}: docker cannot mount a path containing ':' or ','")


def command(launch: Launch, environ: dict[str, str] | None = None, choice: ImageChoice | None = None,
            image_id: str | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    check_mounts(launch)
    choice = choice or choose_image(launch, probe=False)
    ref = choice.configured
    # --init: a real PID 1 reaps the Ray processes the run script stops; without it they linger as
    # zombies of the runner and the script's shutdown waits out its grace period for nothing.
    argv = [docker_bin(), "run", "--rm", "--init", "--name", container_name(launch)]
    if launch.gpus_per_node > 0:
        argv += ["--gpus", "all"]
    argv += run_flags(environ)
    argv += ["-v", f"{launch.inputs_dir}:{INPUTS}:ro",
             "-v", f"{launch.output_dir}:{OUTPUT}",
             "-v", f"{launch.run_dir}:{RUN_ROOT}/{launch.run_id}"]
    for name in launch.secret_names:
        if environ.get(name):
            argv += ["-e", name]  # by name: docker copies the value from our environment
    argv += [x for name in FORWARDED_ENV if name in environ for x in ("-e", name)]
    # RECIPE_IMAGE stays what the launch pinned (the run's identity, as replay compares it); the
    # recipe image's id says which build of this bundle on it ran.
    argv += ["-e", f"RECIPE_IMAGE={ref}"]
    if image_id:
        argv += ["-e", f"RECIPE_IMAGE_ID={image_id}", "-e", f"RECIPE_IMAGE_REF={choice.run_ref}"]
    argv += ["--entrypoint", ENTRYPOINT, image_id or choice.run_ref, *exec_args(launch)]
    return argv


def build_command(choice: ImageChoice) -> list[str]:
    return ["bash", str(bundle_root() / "docker" / "image.sh"), "build", choice.run_ref, choice.configured]


def commands(launch: Launch) -> list[list[str]]:
    """What the backend runs, in order: the recipe image's build where it is needed, then docker run."""
    choice = choose_image(launch, probe=False)
    needs_build = choice.run_ref != choice.configured and choice.built is None
    return [*([build_command(choice)] if needs_build else []), command(launch, choice=choice)]


def describe(launch: Launch) -> tuple[dict, str]:
    """For `recipe plan --backend docker`: the recipe image's build where needed, then docker run."""
    cmds = commands(launch)
    return {"backend_commands": cmds, "backend_command": cmds[-1]}, "\n".join(shlex.join(c) for c in cmds)


def script_text(launch: Launch, choice: ImageChoice | None = None, image_id: str | None = None) -> str:
    """The exact command as a script: the run directory keeps what ran (names of secrets only)."""
    return ("#!/usr/bin/env bash\n# Written by `recipe run --backend docker`; runs the recipe image.\n"
            "set -euo pipefail\n" + f"exec {shlex.join(command(launch, choice=choice, image_id=image_id))}\n")


def recipe_image(launch: Launch) -> tuple[ImageChoice, dict]:
    """The recipe image to run, built on the configured base if it is one and this engine lacks it;
    returns the choice and the record of it (image.json). Raises RuntimeError when it cannot."""
    try:
        choice = choose_image(launch, probe=True)
    except RegistryError as e:  # preflight skipped or the registry is gone: let docker run pull it
        choice = choose_image(launch, probe=False)
        return choice, {"configured": choice.configured, "kind": "unknown", "labels_unreadable": str(e),
                        "recipe_image": choice.run_ref, "bundle_digest": choice.bundle}
    rec = {"configured": choice.configured, "kind": choice.kind, "bundle_digest": choice.bundle,
           "configured_labels": choice.facts.labels if choice.facts else {}}
    if choice.kind != ri.BASE:
        return choice, {**rec, "recipe_image": choice.configured,
                        "recipe_image_id": choice.facts.image_id if choice.facts else None}
    built, t0 = choice.built, time.monotonic()
    if built is None:
        why = ri.can_build(bundle_root())
        if why:
            raise RuntimeError(f"{choice.configured} is a base image and the recipe image cannot be built here: {why}")
        log = Path(launch.run_dir) / "logs" / "image-build.log"
        click.echo(f"recipe: building {choice.run_ref} (this bundle on {choice.configured}); log: {log}", err=True)
        built = ri.build(docker_bin(), bundle_root(), choice.bundle, choice.configured, log)
        rec.update(build_log=str(log))
    return choice, {**rec, "base": choice.configured, "base_digest": ri.base_digest(choice.configured),
                    "recipe_image": choice.run_ref, "recipe_image_id": built.image_id,
                    "reused": choice.built is not None, "build_seconds": round(time.monotonic() - t0, 1)}


def run(launch: Launch, on_start: Callable[[int], None] | None = None,
        on_interrupt: Callable[[str], None] | None = None, on_failure: object = None) -> tuple[int, bool]:
    """Run the container in the foreground; SIGINT/SIGTERM reach `recipe exec` through docker's
    signal proxy, so the run script's trap stops its Ray job before the container exits."""
    Path(launch.output_dir).mkdir(parents=True, exist_ok=True)
    try:
        choice, rec = recipe_image(launch)
    except RuntimeError as e:
        click.echo(f"recipe: error: {e}", err=True)
        return EXIT_PREFLIGHT, False
    write_json_atomic(Path(launch.run_dir) / IMAGE_RECORD, rec)
    script = Path(launch.run_dir) / SCRIPT_NAME
    write_text_atomic(script, script_text(launch, choice, rec.get("recipe_image_id")))
    return run_script(script, {}, Path(launch.run_dir) / "logs" / "docker.log", on_start=on_start,
                      on_interrupt=on_interrupt)


# ---- preflight ---------------------------------------------------------------------------

def _docker(*args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([docker_bin(), *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_docker(launch: Launch) -> Check:
    exe = docker_bin()
    if not shutil.which(exe):
        return fail("docker", f"docker CLI '{exe}' not found on PATH",
                       "install Docker (apt-get install docker.io) or set RECIPE_DOCKER to its path")
    p = _docker("info", "--format", "{{json .}}")
    if p is None or p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["no answer"])[-1] if p else "no answer within 30 s"
        return fail("docker", f"docker daemon not reachable: {why}",
                       "start dockerd (or set DOCKER_HOST to a running engine's socket)")
    info = json.loads(p.stdout or "{}")
    detail = f"engine {info.get('ServerVersion', '?')} ({info.get('Driver', '?')} storage)"
    if launch.gpus_per_node > 0:
        runtimes = set((info.get("Runtimes") or {}).keys())
        hook = shutil.which("nvidia-container-runtime-hook") or shutil.which("nvidia-container-cli")
        if "nvidia" not in runtimes and not hook:
            return fail("docker", f"{detail} has no NVIDIA runtime (runtimes: {', '.join(sorted(runtimes))})",
                           "install nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`")
        detail += ", NVIDIA runtime present"
    return ok("docker", detail)


def check_image(launch: Launch) -> Check:
    """The image must be pinned, readable (this engine, else its registry's config blob) and either a
    recipe image of this bundle or a base to build one on; its labels say which."""
    ref = launch.image
    if ref in ("", "none"):
        return fail("image", f"recipe {launch.recipe.name} pins no image",
                       "set RECIPE_IMAGE=<registry/name@sha256:...> (a base, or an image built by docker/image.sh)")
    if not is_pinned(ref):
        return fail("image", f"image '{ref}' is not pinned by digest",
                       "use NAME@sha256:<64 hex> (tags move; `docker/image.sh push` prints the digest ref)")
    try:
        c = choose_image(launch, probe=True)
    except RegistryError as e:
        return fail("image", f"{ref} is neither on this engine nor readable from its registry: {e}",
                       f"docker login to its registry (or `docker pull {ref}`), then run again")
    facts = c.facts
    where = "present locally" if facts.where == "local" else "in its registry (docker pulls it)"
    labels = facts.labels
    data = {"configured": ref, "kind": c.kind, "where": facts.where, "bundle_digest": c.bundle,
            "labels": labels, "run": c.run_ref}
    if c.kind == ri.THIS:
        check = ok("image", f"{ref}: {ri.THIS} (revision {labels.get(ri.L_REVISION, '?')[:12]}), {where}")
    elif c.kind == ri.OTHER:
        check = fail("image", f"{ref} is a {ri.OTHER} (revision {labels.get(ri.L_REVISION, '?')}, bundle digest "
                        f"{labels.get(ri.L_BUNDLE, 'not labelled')}; this checkout's is {c.bundle})",
                        f"drop --image/RECIPE_IMAGE to build this bundle's recipe image on the pinned base, or "
                        f"--image {labels.get(ri.L_BASE, '<its base>')} to build on its base, or run from a "
                        f"checkout of {labels.get(ri.L_REVISION, 'its revision')}")
    elif c.built is not None:
        data["recipe_image_id"] = c.built.image_id
        check = ok("image", f"{ref}: a base image (no recipe runner), {where}; reusing {c.run_ref} "
                               f"({(c.built.image_id or '?')[:19]}), this bundle built on it")
    elif (why := ri.can_build(bundle_root())) is not None:
        check = fail("image", f"{ref} is a base image (no recipe runner) and the recipe image cannot be built "
                                 f"here: {why}",
                        "build it where the bundle is checked out: docker/image.sh build TAG REF, push it, and "
                        "--image REPO@sha256:...")
    else:
        check = ok("image", f"{ref}: a base image (no recipe runner), {where}; `recipe run` first builds "
                               f"{c.run_ref} on it for this bundle (docker/image.sh build, once per bundle content "
                               "and base)")
    check.data = data
    return check


def checks(launch: Launch | None) -> dict[str, Callable[[], Check]]:
    host = host_checks(launch)
    return {
        "lint": host["lint"],
        "docker": lambda: check_docker(launch),
        "image": lambda: check_image(launch),
        "gpus": host["gpus"],
        "driver": host["driver"],
        "disk": host["disk"],
        "inputs": host["inputs"],
    }
