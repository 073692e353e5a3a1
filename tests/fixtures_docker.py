"""A real Docker engine, a registry on 127.0.0.1 and the CPU recipe image, for the image tests
(import `cpu_image_fixture, docker_engine_fixture` into a test module).

The engine and registry come from tests/services/docker_engine.sh (reused when already up, e.g. started by CI;
stopped at the end only if this session started them). The image chain is built for real:

    mmdebstrap minbase tarball   (cached in $RECIPE_IMAGE_CACHE, default /tmp/recipe-image-cache)
      -> cpu-base: minbase + the tiny recipe's stack from hash-locked wheels (reused from the
         registry when its inputs are unchanged)
      -> the recipe image: docker/Dockerfile on cpu-base by digest, pushed, referenced by digest.

Where the engine cannot start these tests skip with the reason, except under CI=true, where a
skip would hide a broken pipeline: they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "services" / "docker_engine.sh"
IMAGE_SH = ROOT / "docker" / "image.sh"
# Read at import: the suite's autouse fixture clears RECIPE_* from each test's environment.
STATE = os.environ.get("RECIPE_DOCKER_STATE", "/tmp/recipe-docker")
CACHE = Path(os.environ.get("RECIPE_IMAGE_CACHE", "/tmp/recipe-image-cache"))
IN_CI = os.environ.get("CI") == "true"
TIMINGS: dict[str, float] = {}
# Each test module that imports these fixtures gets its own session-scoped copy; the memo makes
# them share one engine and one image build.
_MEMO: dict[str, object] = {}


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and the Docker tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def memlock_raisable() -> bool:
    """Can this host raise RLIMIT_MEMLOCK to unlimited (what `--ulimit memlock=-1` asks runc to do)?"""
    return subprocess.run(["bash", "-c", "ulimit -l unlimited"], capture_output=True).returncode == 0


@dataclass
class Engine:
    env: dict[str, str]  # DOCKER_HOST, RECIPE_REGISTRY
    started_here: bool
    docker: str = "docker"

    @property
    def registry(self) -> str:
        return self.env["RECIPE_REGISTRY"]

    def full_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECIPE_")}
        env.update(self.env)
        env["PYTHON"] = os.environ.get("PYTHON", str(Path(sys.executable)))
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([self.docker, *args], env=self.full_env(), capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
        return p


@dataclass
class CpuImage:
    ref: str  # REGISTRY/recipe-bundle/cpu@sha256:... (what tests run)
    tag: str  # the local build tag
    base_ref: str  # cpu-base by digest
    image_id: str
    context: Path  # the build context it was built from
    timings: dict[str, float] = field(default_factory=dict)


def _engine_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["RECIPE_DOCKER_STATE"] = STATE
    env.update(extra)
    return env


@pytest.fixture(scope="session", name="docker_engine")
def docker_engine_fixture():
    if "engine" in _MEMO:
        yield _MEMO["engine"]
        return
    missing = [b for b in ("dockerd", "docker", "docker-registry", "curl") if not shutil.which(b)]
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed (apt-get install -y docker.io docker-registry curl)")
    env = _engine_env({})
    up = subprocess.run(["bash", str(ENGINE), "status"], env=env, capture_output=True).returncode == 0
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(ENGINE), "start"], env=env, capture_output=True, text=True, timeout=180)
    if p.returncode != 0:
        log = Path(STATE, "dockerd.log")
        tail = log.read_text()[-1500:] if log.is_file() else ""
        skip_or_fail(f"the Docker engine did not start: {p.stderr.strip()} {tail}")
    TIMINGS["engine start"] = time.monotonic() - t0
    values = {}
    for line in p.stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            values[k] = v.strip("'\"")
    engine = _MEMO["engine"] = Engine(env=values, started_here=not up)
    yield engine
    _MEMO.clear()
    if not up:
        subprocess.run(["bash", str(ENGINE), "stop"], env=env, capture_output=True, timeout=120)


def _image_sh(engine: Engine, *args: str, timeout: float = 1200, **extra: str) -> str:
    p = subprocess.run(["bash", str(IMAGE_SH), *args], env=engine.full_env(**extra), capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"docker/image.sh {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def build_recipe_image(engine: Engine, tag: str, base_ref: str, context: Path, no_cache: bool = False) -> str:
    """Build from a context made once by `image.sh context` (the shared working tree may change
    while the suite runs; a rebuild must see the same inputs)."""
    extra = {"RECIPE_BUILD_CONTEXT": str(context)}
    if no_cache:
        extra["RECIPE_BUILD_NO_CACHE"] = "1"
    return _image_sh(engine, "build", tag, base_ref, **extra)


@pytest.fixture(scope="session", name="cpu_image")
def cpu_image_fixture(docker_engine: Engine) -> CpuImage:
    if "cpu_image" in _MEMO:
        return _MEMO["cpu_image"]
    if not shutil.which("mmdebstrap"):
        skip_or_fail("mmdebstrap not installed (apt-get install -y mmdebstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / "minbase.tar"
    timings: dict[str, float] = {}
    if not tarball.is_file():
        t0 = time.monotonic()
        _image_sh(docker_engine, "minbase", str(tarball), timeout=900)
        timings["minbase (mmdebstrap)"] = time.monotonic() - t0
    t0 = time.monotonic()
    base_ref = _image_sh(docker_engine, "cpu-base", f"{docker_engine.registry}/recipe-bundle", str(tarball))
    timings["cpu-base (build+push, or registry hit)"] = time.monotonic() - t0
    tag = "recipe-bundle:cpu-test"
    context = CACHE / "context"
    t0 = time.monotonic()
    _image_sh(docker_engine, "context", str(context))
    image_id = build_recipe_image(docker_engine, tag, base_ref, context)
    timings["recipe image build"] = time.monotonic() - t0
    t0 = time.monotonic()
    ref = _image_sh(docker_engine, "push", tag, f"{docker_engine.registry}/recipe-bundle/cpu:test")
    # The push pinned the config's build times: pull that image (only its config is new here).
    docker_engine.run("pull", "-q", ref)
    image_id = docker_engine.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    timings["recipe image push + pin + pull"] = time.monotonic() - t0
    TIMINGS.update(timings)
    image = _MEMO["cpu_image"] = CpuImage(ref=ref, tag=tag, base_ref=base_ref, image_id=image_id, context=context,
                                          timings=timings)
    return image
