"""The Slurm container path for real: pyxis 0.24.0 and enroot 4.1.2, built from their release
tarballs by ci/build_vendor.sh, on the two-node test cluster (tests/fixtures_slurm.py), running the
CPU recipe image that tests/fixtures_docker.py builds and pushes to the registry on 127.0.0.1.

1. pyxis is in the cluster's plugstack.conf; each node has its own enroot runtime, cache and data
   paths under the cluster's temp dir.
2. `recipe image sqsh` imports the image by digest with the real enroot into a .sqsh keyed by digest.
3. `recipe sbatch nemotron3_nano_tiny --nodes 2 --container-runtime pyxis --submit` runs the tiny
   recipe in containers on both nodes (Ray head in one, worker in the other) to a passing gate,
   from the staged .sqsh and with pyxis pulling the image by digest itself.
4. `recipe doctor` inside the container reports the pinned reference and the image's labels.
5. Killing one node's container step fails the job within seconds naming that node; scancel ends
   everything; no container of the job is left on either node.
6. Planted secrets reach the containers by name only: in no file, log or argv.

Under CI=true everything here fails instead of skipping when it cannot run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_docker import IN_CI, cpu_image_fixture, docker_engine_fixture  # noqa: F401
from fixtures_slurm import (  # noqa: F401
    ENROOT_LAUNCHER,
    ROOT,
    SlurmCluster,
    assert_job_gone,
    assert_not_in_any_argv,
    slurm_cluster_fixture,
)

from runner.image import enroot

pytestmark = pytest.mark.slow

PLANTED = {"WANDB_API_KEY": "sk-test-PLANTED-wandb-7373", "HF_TOKEN": "hf_test_PLANTED_hf_7373"}
TINY = "nemotron3_nano_tiny"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    if not slurm_cluster.containers:
        msg = "pyxis/enroot not built: run ci/build_vendor.sh (as root) before the tests"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return slurm_cluster


def host_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    return cluster.env(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                       PYTHONPATH=str(ROOT), **PLANTED, **extra)


@pytest.fixture(scope="module")
def staged(cluster, cpu_image, tmp_path_factory) -> tuple[Path, dict[str, str], float]:
    """`recipe image sqsh` with the real enroot (its own runtime/cache/data paths in a temp dir)."""
    base = tmp_path_factory.mktemp("enroot-host")
    paths = {f"ENROOT_{k}_PATH": str(base / k.lower()) for k in ("RUNTIME", "CACHE", "DATA", "TEMP")}
    (base / "temp").mkdir()
    env = host_env(cluster, ENROOT_ALLOW_HTTP="yes", **paths)
    env.pop("SLURM_CONF")  # this is the submit host, not a node: enroot uses the paths above
    out = base / "images"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "runner.cli", "image", "sqsh", TINY, "--image", cpu_image.ref,
                        "--output-dir", str(out)], env=env, capture_output=True, text=True, timeout=900, check=False)
    took = time.monotonic() - t0
    TIMINGS["image import (enroot, by digest)"] = took
    assert p.returncode == 0, p.stderr[-3000:]
    return Path(p.stdout.strip()), env, took


def test_sqsh_imported_by_digest_with_the_real_enroot(cluster, cpu_image, staged):
    path, env, took = staged
    assert path.name == enroot.sqsh_name(cpu_image.ref) and path.read_bytes()[:4] == b"hsqs"  # squashfs magic
    assert not [p for p in path.parent.iterdir() if p != path]  # no partial file left beside it
    again = subprocess.run([sys.executable, "-m", "runner.cli", "image", "sqsh", TINY, "--image", cpu_image.ref,
                            "--output-dir", str(path.parent)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    print(f"\nenroot import of {cpu_image.ref}: {took:.1f} s, {path.stat().st_size / 2**20:.0f} MiB")


def submit(cluster: SlurmCluster, image: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", TINY, "--nodes", "2", "--gpus-per-node", "0",
                        "--container-runtime", "pyxis", "--image", image, "--bundle-dir", "/opt/recipe-bundle",
                        "--runs-dir", str(runs), "--output-dir", str(tmp_path / "out"), *extra, "--submit"],
                       env=host_env(cluster), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), runs


def job_output(runs: Path, job: str) -> str:
    f = runs / f"recipe-{TINY}-{job}.out"
    return f.read_text(errors="replace") if f.is_file() else ""


def assert_nothing_left(cluster: SlurmCluster, job: str) -> None:
    assert_job_gone(cluster, job)
    for node in ("n1", "n2"):
        mine = [c for c in cluster.enroot_list(node) if f"recipe-{TINY}-{job}" in c]
        assert not mine, f"enroot containers of job {job} left on {node}: {mine}"
    idle = cluster.run("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
    assert idle == ["n1", "idle", "n2", "idle"], idle  # a failed pyxis epilog would drain a node


def assert_no_secrets(cluster: SlurmCluster, *roots: Path) -> None:
    # The nodes' enroot runtime/temp dirs and pyxis' runtime dir: where a value written to a file
    # by the container runtime would be (the image cache and container rootfs hold the image only).
    nodes = [cluster.state / "nodes" / n / "enroot" / d for n in ("n1", "n2") for d in ("runtime", "tmp")]
    for root in [*roots, cluster.state / "log", cluster.state / "pyxis", *nodes]:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            for name, value in PLANTED.items():
                assert value.encode() not in data, f"{name}'s value found in {f}"


def assert_no_secret_in_argv() -> None:
    assert_not_in_any_argv(PLANTED.values())


def wait_for_step(cluster: SlurmCluster, job: str, name: str, runs: Path, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    steps: dict[str, str] = {}
    while time.monotonic() < deadline and name not in steps:
        if cluster.job(job).get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING"):
            break
        steps = cluster.steps(job)
        time.sleep(0.5)
    assert name in steps, f"step {name} never ran: {steps}\n{job_output(runs, job)[-3000:]}"
    return steps


def timeline(out: str) -> str:
    """The job's own timestamped milestones (sbatch_job.sh logs them), for the benchmark."""
    keys = ("job ", "containers ", "ray ready on", "recipe run succeeded", "finished with exit code")
    return "\n".join(line for line in out.splitlines() if line.startswith("[recipe ") and any(k in line for k in keys))


def run_tiny(cluster: SlurmCluster, ref: str, tmp_path: Path, label: str, *extra: str) -> str:
    """Submit the tiny recipe in containers on both nodes; it must pass its gate and leave nothing."""
    job, runs = submit(cluster, ref, tmp_path, *extra)
    try:
        t0 = time.monotonic()
        info = cluster.wait_job(job, timeout=900)
        TIMINGS[f"tiny job, {label} (submit to end)"] = time.monotonic() - t0
        out = job_output(runs, job)
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-5000:]
        assert info["NodeList"] == "n[1-2]"
        assert f"containers recipe-{TINY}-{job} ready on n1 n2" in out, out[-3000:]
        assert "ray ready: 2 node(s)" in out  # the head in n1's container, the worker in n2's
        [run_dir] = [d for d in runs.iterdir() if (d / "plan.json").is_file()]
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "succeeded", record
        assert record["image"] == ref  # RECIPE_IMAGE reached the run inside the container
        assert '"passed": true' in (run_dir / "gate.json").read_text()
        print(f"\njob {job} ({label}): {info.get('RunTime')} from start to end\n" + timeline(out))
        assert_nothing_left(cluster, job)
        assert_no_secrets(cluster, runs, tmp_path / "out")
        return out
    finally:
        cluster.run("scancel", job)


def test_tiny_recipe_in_containers_from_the_staged_sqsh(cluster, cpu_image, staged, tmp_path):
    sqsh, _, _ = staged
    out = run_tiny(cluster, cpu_image.ref, tmp_path, "from the staged .sqsh", "--sqsh-dir", str(sqsh.parent))
    [script_file] = (tmp_path / "runs").glob("*/slurm-job.sh")   # beside the plan it carries out
    script = script_file.read_text()
    assert f"IMAGE={sqsh}" in script and f"IMAGE_REF={cpu_image.ref}" in script
    assert "pyxis: importing" not in out  # the .sqsh was used, nothing pulled


def test_tiny_recipe_in_containers_pulled_by_digest_by_pyxis(cluster, cpu_image, tmp_path):
    out = run_tiny(cluster, cpu_image.ref, tmp_path, "pyxis pulling by digest")
    pulled = enroot.pyxis_image(cpu_image.ref)
    assert f"pyxis: imported docker image: {pulled}" in out, out[-3000:]
    assert "@sha256:" in pulled


def test_doctor_in_the_container_reports_the_pinned_image_and_its_labels(cluster, cpu_image, staged):
    sqsh, _, _ = staged
    p = subprocess.run(["srun", "--nodes=1", "--nodelist=n2", f"--container-image={sqsh}", "--no-container-mount-home",
                        "--export=ALL,RECIPE_IMAGE=" + cpu_image.ref, "recipe", "doctor", "--json"],
                       env=host_env(cluster), capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(p.stdout)  # exit 3: the CPU image is not the GPU image the lock describes
    assert report["image"] == cpu_image.ref
    labels = report["labels"]
    inspect = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", cpu_image.ref],
                             env=cpu_image_env(), capture_output=True, text=True, timeout=60, check=True)
    assert labels == json.loads(inspect.stdout)  # exactly the labels the registry's image carries
    assert labels["org.opencontainers.image.title"] == "recipe-bundle" and "io.recipe-bundle.recipes.digest" in labels
    print("\n" + "\n".join(f"{k}: {v}" for k, v in sorted(labels.items())))


def cpu_image_env() -> dict[str, str]:
    from fixtures_docker import _MEMO

    return _MEMO["engine"].full_env()


def test_killed_container_step_fails_the_job_fast_naming_the_node(cluster, cpu_image, staged, tmp_path):
    sqsh, _, _ = staged
    job, runs = submit(cluster, cpu_image.ref, tmp_path, "--sqsh-dir", str(sqsh.parent))
    try:
        steps = wait_for_step(cluster, job, "recipe-run", runs, timeout=600)
        assert "ray-worker-n2" in steps, steps
        assert_no_secret_in_argv()  # while it runs, with every container up
        killed = time.monotonic()
        p = cluster.run("scancel", "--signal=KILL", steps["ray-worker-n2"])
        assert p.returncode == 0, p.stderr
        info = cluster.wait_job(job, timeout=120)
        took = time.monotonic() - killed
        out = job_output(runs, job)
        assert info["JobState"] == "FAILED" and info["ExitCode"] == "1:0", out[-3000:]
        assert "recipe: error: node n2 (127.0.0.3): its Ray step ended" in out, out[-3000:]
        assert took < 60, f"job took {took:.0f} s to end after the node's container step was killed"
        print(f"\njob {job}: failed {took:.1f} s after n2's container step was killed")
        assert_nothing_left(cluster, job)
        assert_no_secrets(cluster, runs)
    finally:
        cluster.run("scancel", job)


def test_scancel_ends_every_container_step_and_leaves_no_container(cluster, cpu_image, staged, tmp_path):
    sqsh, _, _ = staged
    job, runs = submit(cluster, cpu_image.ref, tmp_path, "--sqsh-dir", str(sqsh.parent))
    try:
        wait_for_step(cluster, job, "recipe-run", runs, timeout=600)
        assert cluster.enroot_list("n1") and cluster.enroot_list("n2")  # the job's containers exist now
        t0 = time.monotonic()
        assert cluster.run("scancel", job).returncode == 0
        info = cluster.wait_job(job, timeout=120)
        assert info["JobState"] == "CANCELLED"
        # scancel leaves the job no step to clean up with: pyxis' epilog (container_scope=job) removes them.
        assert_nothing_left(cluster, job)
        print(f"\njob {job}: cancelled, no process or container left after {time.monotonic() - t0:.1f} s")
        assert_no_secrets(cluster, runs)
    finally:
        cluster.run("scancel", job)
