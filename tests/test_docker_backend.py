"""The docker backend: the exact `docker run` it builds, its preflight against real engines (or their
absence), and (slow) the tiny recipe run end to end in the CPU image pulled by digest from a
registry on 127.0.0.1, with its run directory and metrics landing on the host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env
from fixtures_docker import CpuImage, Engine, cpu_image_fixture, docker_engine_fixture, memlock_raisable  # noqa: F401

from runner.image import recipe_image as ri
from runner.launch.backends import docker as dk
from runner.plan.document import plan_document
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe

DIGEST = "sha256:" + "ab" * 32


def launch_for(name: str, tmp_path: Path, monkeypatch, skip=(), **env: str):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    opts = RunOptions.resolve(load_recipe(name), {"inputs_dir": inputs, "output_dir": tmp_path / "out"}, from_env=True)
    return build_launch(opts, run_id="r-1", run_dir=tmp_path / "run", backend="docker", skip=set(skip),
                        view=dk.job_view("r-1"))


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_gpu_recipe_command(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch)
    argv = dk.command(lc)
    # The recipe pins the miles base: what runs is this bundle's recipe image built on it.
    ref = ri.auto_tag(ri.bundle_digest(ROOT), lc.recipe.image)
    assert f"RECIPE_IMAGE={lc.recipe.image}" in flag_values(argv, "-e")
    assert argv[:6] == ["docker", "run", "--rm", "--init", "--name", "recipe-r-1"]
    assert flag_values(argv, "--gpus") == ["all"]
    for f in ("--ipc=host", "--shm-size=32g", "--network=host"):
        assert f in argv
    assert flag_values(argv, "--ulimit") == ["memlock=-1", "stack=67108864"]
    assert flag_values(argv, "-v") == [f"{tmp_path}/inputs:/recipe/inputs:ro", f"{tmp_path}/out:/recipe/output",
                                       f"{tmp_path}/run:/recipe/run/r-1"]
    assert flag_values(argv, "--entrypoint") == ["/usr/local/bin/recipe"]
    # The container carries out the plan frozen in its run directory; no option travels in argv.
    assert argv[argv.index(ref) + 1:] == ["exec", "/recipe/run/r-1"]
    # That plan is rendered with the paths the container sees.
    doc = plan_document(lc)
    assert doc["run_dir"] == "/recipe/run/r-1" and doc["output_dir"] == "/recipe/output"
    assert doc["options"]["inputs_dir"] == "/recipe/inputs" and doc["options"]["gpus_per_node"] == 8
    assert "/recipe/inputs/model" in lc.plan.argv and str(tmp_path) not in json.dumps(doc)


def test_cpu_recipe_has_no_gpus_flag_and_its_skips_travel_in_the_plan(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch, skip=("inputs", "docker"),
                    RECIPE_IMAGE=f"reg.example/x@{DIGEST}")
    argv = dk.command(lc)
    assert "--gpus" not in argv and "--skip-preflight" not in argv
    assert plan_document(lc)["run"]["skip"] == ["docker", "inputs"]
    assert argv[argv.index("--entrypoint") + 2] == f"reg.example/x@{DIGEST}"


def test_secrets_pass_by_name_only_and_only_when_set(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch, WANDB_API_KEY="wandb-secret-value-123")
    argv = dk.command(lc)
    assert "WANDB_API_KEY" in flag_values(argv, "-e")
    assert "HF_TOKEN" not in flag_values(argv, "-e")
    assert not any("wandb-secret-value-123" in a for a in argv)
    assert "wandb-secret-value-123" not in dk.script_text(lc)


def test_network_interfaces_and_nccl_debug_reach_the_container_by_name(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch)
    assert not {"NCCL_SOCKET_IFNAME", "NCCL_DEBUG"} & set(flag_values(dk.command(lc, environ={}), "-e"))
    env = {"NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "eth0", "NCCL_DEBUG": "INFO",
           "NCCL_DEBUG_FILE": "/x/n.%h"}
    e = flag_values(dk.command(lc, environ=env), "-e")
    assert {"NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_DEBUG_FILE"} <= set(e)
    assert not any("ib0" in a for a in dk.command(lc, environ=env))  # by name, as docker copies values


def test_would_run_builds_the_recipe_image_first_then_runs_it(tmp_path, monkeypatch):
    from runner.launch.run import would_run

    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch)
    build, run = would_run(lc)
    tag = ri.auto_tag(ri.bundle_digest(ROOT), lc.recipe.image)
    assert build[-3:] == ["build", tag, lc.recipe.image] and build[1].endswith("docker/image.sh")
    assert tag in run


def test_memlock_flag_can_be_left_to_the_host(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch, RECIPE_DOCKER_MEMLOCK="host")
    assert flag_values(dk.command(lc), "--ulimit") == ["stack=67108864"]


def test_preflight_names_a_missing_cli_and_an_unreachable_daemon(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch)
    monkeypatch.setenv("RECIPE_DOCKER", str(tmp_path / "no-such-docker"))
    c = dk.check_docker(lc)
    assert c.status == "fail" and "not found" in c.detail and c.fix
    monkeypatch.delenv("RECIPE_DOCKER")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    c = dk.check_docker(lc)
    assert c.status == "fail" and "not reachable" in c.detail and "dockerd" in c.fix


def test_preflight_refuses_no_image_and_unpinned_images(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch)
    c = dk.check_image(lc)  # the tiny recipe pins no image and RECIPE_IMAGE is unset
    assert c.status == "fail" and "pins no image" in c.detail and "RECIPE_IMAGE" in c.fix
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch, RECIPE_IMAGE="radixark/miles:v0.1.0")
    c = dk.check_image(lc)
    assert c.status == "fail" and "not pinned by digest" in c.detail


@pytest.mark.slow
def test_preflight_against_a_real_engine(docker_engine: Engine, cpu_image: CpuImage, tmp_path, monkeypatch):
    for k, v in docker_engine.env.items():
        monkeypatch.setenv(k, v)
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch, RECIPE_IMAGE=cpu_image.ref)
    assert dk.check_docker(lc).status == "ok"
    c = dk.check_image(lc)
    assert c.status == "ok" and "present locally" in c.detail and "recipe image of this bundle" in c.detail
    # The CPU base by digest has no runner: a base, on which `recipe run` builds this bundle's image.
    dk_launch = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch, RECIPE_IMAGE=cpu_image.base_ref)
    c = dk.check_image(dk_launch)
    assert c.status == "ok" and "a base image (no recipe runner)" in c.detail
    assert c.data["run"] == ri.auto_tag(ri.bundle_digest(ROOT), cpu_image.base_ref)
    assert dk.commands(dk_launch)[-1][-3] == c.data["run"]
    lc = launch_for("nemotron3_nano_tiny", tmp_path, monkeypatch,
                    RECIPE_IMAGE=f"{docker_engine.registry}/recipe-bundle/absent@{DIGEST}")
    assert dk.check_image(lc).status == "fail"


@pytest.mark.slow
def test_tiny_recipe_runs_in_the_image_pulled_by_digest(docker_engine: Engine, cpu_image: CpuImage, tmp_path):
    # Drop every local name of the recipe image so that `docker run` must pull it by digest.
    docker_engine.run("image", "rm", cpu_image.tag, f"{docker_engine.registry}/recipe-bundle/cpu:test",
                      cpu_image.ref, check=False)
    assert docker_engine.run("image", "inspect", cpu_image.ref, check=False).returncode != 0
    extra = {"RECIPE_IMAGE": cpu_image.ref, **docker_engine.env}
    if not memlock_raisable():  # this sandbox denies raising RLIMIT_MEMLOCK even to root
        extra["RECIPE_DOCKER_MEMLOCK"] = "host"
    env = clean_env(**extra)
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "runner.cli", "run", "nemotron3_nano_tiny", "--backend", "docker",
                        "--runs-dir", str(runs)], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-4000:] + p.stdout[-2000:]
    (run_dir,) = runs.iterdir()
    inner = run_dir  # one run directory, one record: as a local run's
    assert not (run_dir / "container").exists() and not (run_dir / "launcher.json").exists()
    record = json.loads((inner / "run.json").read_text())
    assert record["status"] == "succeeded" and record["backend"] == "docker"
    # the in-image checks ran inside, against the same plan, after the host's
    names = [c["name"] for c in record["preflight"]]
    assert names[:2] == ["lint", "docker"] and names[-3:] == ["args", "model", "packages"]
    assert record["packages"]["versions"]  # asked of the image's interpreter, inside
    gate = json.loads((inner / "gate.json").read_text())
    assert gate["passed"] is True
    lines = [json.loads(line) for line in (inner / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "recipe-metrics" and len(lines) > 10
    assert cpu_image.ref in (run_dir / dk.SCRIPT_NAME).read_text()
    # --rm: no container is left behind under the run's name.
    left = docker_engine.run("ps", "-a", "--filter", f"name=recipe-{run_dir.name}", "--format", "{{.ID}}")
    assert left.stdout.strip() == ""
    # Pulled by digest: the engine now knows the image under exactly that digest (and the build
    # tag is restored for the tests that run after this one).
    assert docker_engine.run("image", "inspect", "--format", "{{.Id}}", cpu_image.ref).stdout.strip() == \
        cpu_image.image_id
    docker_engine.run("tag", cpu_image.ref, cpu_image.tag)


@pytest.mark.slow
def test_tiny_recipe_runs_from_the_cpu_base_alone(docker_engine: Engine, cpu_image: CpuImage, tmp_path):
    """What `just run nemotron3_nano` does with the pinned miles base, on the CPU stand-in base: the
    recipe image of this bundle is built on the base by digest, run, recorded; then reused."""
    bundle = ri.bundle_digest(ROOT)
    tag = ri.auto_tag(bundle, cpu_image.base_ref)
    docker_engine.run("image", "rm", tag, check=False)  # a first run on this node: nothing to reuse
    # Wide console: the preflight wraps its text to the width, and the phrases below are asserted whole.
    extra = {"RECIPE_IMAGE": cpu_image.base_ref, "COLUMNS": "400", **docker_engine.env}
    if not memlock_raisable():
        extra["RECIPE_DOCKER_MEMLOCK"] = "host"
    env = clean_env(**extra)
    runs = tmp_path / "runs"
    dry = subprocess.run([sys.executable, "-m", "runner.cli", "run", "nemotron3_nano_tiny", "--backend", "docker",
                          "--runs-dir", str(runs), "--dry-run"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert dry.returncode == 0 and f"builds {tag} on it" in dry.stderr, dry.stderr
    assert dry.stdout.splitlines()[0].split()[-3:] == ["build", tag, cpu_image.base_ref]
    p = subprocess.run([sys.executable, "-m", "runner.cli", "run", "nemotron3_nano_tiny", "--backend", "docker",
                        "--runs-dir", str(runs)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-4000:] + p.stdout[-2000:]
    (run_dir,) = runs.iterdir()
    built = inspect_image(docker_engine, tag)
    labels = built["Config"]["Labels"]
    assert labels["io.recipe-bundle.bundle.digest"] == bundle  # image.sh's digest of its context == ours
    assert labels["org.opencontainers.image.base.digest"] == cpu_image.base_ref.split("@")[1]
    # Deterministic: the one layer it adds is the layer image.sh's own build of this bundle added.
    assert built["RootFS"]["Layers"] == inspect_image(docker_engine, cpu_image.ref)["RootFS"]["Layers"]
    image = json.loads((run_dir / dk.IMAGE_RECORD).read_text())
    assert image["kind"] == "base" and image["reused"] is False and image["recipe_image"] == tag
    assert image["recipe_image_id"] == built["Id"] and image["base_digest"] == cpu_image.base_ref.split("@")[1]
    assert (run_dir / "logs" / "image-build.log").is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["image"] == cpu_image.base_ref
    ib = record["image_build"]
    assert ib["recipe_image_id"] == built["Id"] and ib["recipe_image"] == tag
    assert ib["base_digest"] == cpu_image.base_ref.split("@")[1] and ib["bundle_digest"] == bundle
    assert json.loads((run_dir / "gate.json").read_text())["passed"] is True
    # The next run on this node reuses it: nothing to build.
    again = subprocess.run([sys.executable, "-m", "runner.cli", "run", "nemotron3_nano_tiny", "--backend", "docker",
                            "--runs-dir", str(tmp_path / "runs2"), "--dry-run"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"reusing {tag}" in again.stderr, again.stderr
    assert "image.sh build" not in again.stdout and built["Id"] not in again.stdout


def inspect_image(engine: Engine, ref: str) -> dict:
    return json.loads(engine.run("image", "inspect", ref).stdout)[0]


def test_rehash_and_no_gate_reach_the_job_in_its_plan(tmp_path, monkeypatch):
    lc = launch_for("nemotron3_nano", tmp_path, monkeypatch)
    assert plan_document(lc)["run"] == {"skip": [], "rehash": False, "gate": True}
    lc.rehash, lc.gate = True, False
    assert plan_document(lc)["run"] == {"skip": [], "rehash": True, "gate": False}
