"""The recipe image, built for real on a small CPU base by digest: what it holds, what it runs,
and that a rebuild of the same inputs adds a byte-identical layer."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from fixtures_docker import (  # noqa: F401
    IMAGE_SH,
    ROOT,
    CpuImage,
    Engine,
    build_recipe_image,
    cpu_image_fixture,
    docker_engine_fixture,
)

pytestmark = pytest.mark.slow


def inspect(engine: Engine, ref: str) -> dict:
    return json.loads(engine.run("image", "inspect", ref).stdout)[0]


def test_image_is_its_base_plus_one_layer_with_provenance_labels(docker_engine: Engine, cpu_image: CpuImage):
    img, base = inspect(docker_engine, cpu_image.ref), inspect(docker_engine, cpu_image.base_ref)
    layers, base_layers = img["RootFS"]["Layers"], base["RootFS"]["Layers"]
    assert layers[:-1] == base_layers and len(layers) == len(base_layers) + 1
    labels = img["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "recipe-bundle"
    assert labels["org.opencontainers.image.base.name"] == cpu_image.base_ref
    assert labels["org.opencontainers.image.base.digest"] == cpu_image.base_ref.split("@", 1)[1]
    args = dict(line.split("=", 1) for line in (cpu_image.context / "build-args").read_text().splitlines())
    rev = labels["org.opencontainers.image.revision"]
    assert rev == args["REVISION"] and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", rev)
    assert subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", rev.removesuffix("-dirty")]).returncode == 0
    assert labels["io.recipe-bundle.recipes.digest"] == args["RECIPES_DIGEST"]
    assert labels["io.recipe-bundle.recipes.digest"].startswith("sha256:") and len(
        labels["io.recipe-bundle.recipes.digest"]) == 71
    assert img["Config"]["Entrypoint"] == ["/usr/local/bin/recipe"]
    assert "RECIPE_IN_IMAGE=1" in img["Config"]["Env"]


def test_image_plans_the_30b_recipe(docker_engine: Engine, cpu_image: CpuImage):
    p = docker_engine.run("run", "--rm", "--network=host", cpu_image.ref, "plan", "nemotron3_nano")
    assert "python3 /root/miles/train.py" in p.stdout
    assert "--moe-router-topk-scaling-factor 2.5" in p.stdout
    assert "--tensor-model-parallel-size 2" in p.stdout


def test_doctor_in_the_cpu_image_says_it_is_not_the_gpu_image(docker_engine: Engine, cpu_image: CpuImage):
    p = docker_engine.run("run", "--rm", "--network=host", "-e", f"RECIPE_IMAGE={cpu_image.ref}", cpu_image.ref,
                          "doctor", "--json", check=False)
    assert p.returncode == 3, p.stderr  # EXIT_PREFLIGHT: not the pinned image; no traceback
    rep = json.loads(p.stdout)
    assert rep["ok"] is False and rep["in_image"] is False
    assert rep["image"] == cpu_image.ref
    assert rep["lock"] == "/opt/recipe-bundle/docker/image.lock"
    rows = {(r["kind"], r["name"]): r for r in rep["rows"]}
    assert rows[("commit", "miles")]["status"] == "missing"
    # The CPU base has torch (the CPU build), not the lock's 2.11.0: reported, not crashed on.
    assert rows[("version", "torch")]["found"].endswith("+cpu")
    assert rows[("version", "torch")]["status"] == "mismatch"
    assert rows[("kernel", "mamba_ssm")]["status"] == "skipped"
    # build.json inside the image names the base it was built on: the CPU base, not the lock's.
    base = rows[("image", "base")]
    assert base["status"] == "mismatch" and base["found"] == cpu_image.base_ref.split("@", 1)[1]
    assert rows[("image", "variant cu129")]["expected"] == "unknown"


def test_rebuild_without_cache_adds_the_identical_layer(docker_engine: Engine, cpu_image: CpuImage):
    again = build_recipe_image(docker_engine, "recipe-bundle:cpu-test-rebuild", cpu_image.base_ref, cpu_image.context,
                               no_cache=True)
    first, second = inspect(docker_engine, cpu_image.ref), inspect(docker_engine, again)
    assert first["RootFS"]["Layers"] == second["RootFS"]["Layers"]
    digests = [subprocess.run(["bash", str(IMAGE_SH), "content-digest", ref], env=docker_engine.full_env(),
                              capture_output=True, text=True, check=True).stdout.strip()
               for ref in (cpu_image.ref, again)]
    assert digests[0] == digests[1] and digests[0].startswith("sha256:")
    # The classic builder stamps the config with the build time, so the local ids differ...
    assert first["Id"] != second["Id"] and first["Created"] != second["Created"]
    # ...and the push pins those stamps: the same inputs give the same registry digest.
    ref = subprocess.run(["bash", str(IMAGE_SH), "push", again, f"{docker_engine.registry}/recipe-bundle/cpu:rebuild"],
                         env=docker_engine.full_env(), capture_output=True, text=True, check=True).stdout.strip()
    assert ref.split("@")[1] == cpu_image.ref.split("@")[1]


def tree(root: Path) -> list[tuple[str, int, int, str]]:
    return [(str(p.relative_to(root)), p.stat().st_mode, p.stat().st_mtime_ns,
             hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
            for p in sorted(root.rglob("*"))]


def test_the_build_context_is_assembled_identically_twice(tmp_path, docker_engine: Engine):
    # Back to back, so that the shared working tree has no time to change in between.
    for d in ("a", "b"):
        subprocess.run(["bash", str(IMAGE_SH), "context", str(tmp_path / d)], env=docker_engine.full_env(),
                       check=True, capture_output=True, timeout=300)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b
    names = {t[0] for t in a}
    assert {"Dockerfile", "requirements.lock", "build-args", "bundle/runner/cli.py", "bundle/docker/image.lock",
            "bundle/recipes/nemotron3_nano/recipe.toml"} <= names
    assert not any("__pycache__" in n for n in names)
    assert len({t[2] for t in a}) == 1  # every timestamp pinned to SOURCE_DATE_EPOCH
