"""Time the CPU image chain on this machine and print a table (a benchmark, not a test).

    .venv/bin/python bench/bench_image.py [--fresh]

Steps: private engine + registry up, mmdebstrap minbase, cpu-base (build + push; --fresh forces a
rebuild under a new repository name instead of the registry hit), the recipe image build, a
second build without cache (and whether it added the identical layer), push, pull by digest
after removing the local copy, `recipe plan` in the image, and the tiny recipe through
`recipe run --backend docker`. Uses tests/services/docker_engine.sh's state (default /tmp/recipe-docker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_SH = ROOT / "tests" / "services" / "docker_engine.sh"
IMAGE_SH = ["bash", str(ROOT / "docker" / "image.sh")]
CACHE = Path(os.environ.get("RECIPE_IMAGE_CACHE", "/tmp/recipe-image-cache"))


def sh(argv: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"bench_image: {' '.join(argv[:4])} ... exited {p.returncode}:\n{p.stderr[-2000:]}")
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def timed(rows: list[tuple[str, float, str]], name: str, fn, note: str = "") -> str:
    t0 = time.monotonic()
    out = fn()
    rows.append((name, time.monotonic() - t0, note))
    return out


def main() -> int:
    fresh = "--fresh" in sys.argv[1:]
    env = dict(os.environ, PYTHON=sys.executable)
    rows: list[tuple[str, float, str]] = []
    out = timed(rows, "engine + registry start", lambda: subprocess.run(
        ["bash", str(ENGINE_SH), "start"], env=env, capture_output=True, text=True,
        check=True).stdout)
    for line in out.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        env[k] = v.strip("'\"")
    reg = env["RECIPE_REGISTRY"]
    CACHE.mkdir(parents=True, exist_ok=True)
    # --fresh builds its own minbase beside the cache, so the tests' cached chain stays as it is.
    tarball = CACHE / ("minbase-bench.tar" if fresh else "minbase.tar")
    if fresh or not tarball.is_file():
        timed(rows, "minbase tarball (mmdebstrap)", lambda: sh([*IMAGE_SH, "minbase", str(tarball)], env))
        rows[-1] = (*rows[-1][:2], f"{tarball.stat().st_size / 1e6:.0f} MB")
    repo = f"{reg}/bench-{int(time.time())}" if fresh else f"{reg}/recipe-bundle"
    base = timed(rows, "cpu-base (build + push, or registry hit)", lambda: sh([*IMAGE_SH, "cpu-base", repo,
                                                                              str(tarball)], env))
    timed(rows, "recipe image build", lambda: sh([*IMAGE_SH, "build", "recipe-bundle:bench", base], env))
    timed(rows, "recipe image rebuild, no cache",
          lambda: sh([*IMAGE_SH, "build", "recipe-bundle:bench2", base], {**env, "RECIPE_BUILD_NO_CACHE": "1"}))
    same = [sh([*IMAGE_SH, "content-digest", t], env) for t in ("recipe-bundle:bench", "recipe-bundle:bench2")]
    rows.append(("  same content digest twice", 0.0, str(same[0] == same[1])))
    ref = timed(rows, "recipe image push", lambda: sh([*IMAGE_SH, "push", "recipe-bundle:bench",
                                                       f"{reg}/recipe-bundle/bench:latest"], env))
    subprocess.run(["docker", "image", "rm", "recipe-bundle:bench", "recipe-bundle:bench2",
                    f"{reg}/recipe-bundle/bench:latest", ref], env=env, capture_output=True)
    timed(rows, "pull by digest (recipe layer only)", lambda: sh(["docker", "pull", ref], env))
    size = json.loads(sh(["docker", "image", "inspect", "--format", "{{json .Size}}", ref], env))
    rows.append(("  image size", 0.0, f"{size / 1e9:.2f} GB"))
    timed(rows, "docker run: recipe plan nemotron3_nano",
          lambda: sh(["docker", "run", "--rm", "--network=host", ref, "plan", "nemotron3_nano"], env))
    memlock = subprocess.run(["bash", "-c", "ulimit -l unlimited"], capture_output=True).returncode == 0
    run_env = {**env, "RECIPE_IMAGE": ref, **({} if memlock else {"RECIPE_DOCKER_MEMLOCK": "host"})}
    with tempfile.TemporaryDirectory() as tmp:
        timed(rows, "recipe run nemotron3_nano_tiny --backend docker",
              lambda: sh([sys.executable, "-m", "runner.cli", "run", "nemotron3_nano_tiny", "--backend", "docker",
                          "--runs-dir", tmp], {**run_env, "PYTHONPATH": str(ROOT)}, timeout=900))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  note")
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs:>8.1f}  {note}" if secs else f"{name:<{width}}  {'':>8}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
