"""A real two-node Slurm cluster for tests (tests/services/slurm_cluster.sh), and helpers to run jobs on it.

Import `slurm_cluster_fixture` into a test module to get the `slurm_cluster` fixture.
The cluster is started once per test session under a temp dir and stopped (by PID) at the end.
If CI already started one, export RECIPE_TEST_SLURM_CONF=/path/to/slurm.conf to reuse it.
Without slurm-wlm/munge installed the tests are skipped, unless RECIPE_REQUIRE_SLURM=1 (CI),
which turns that into a failure.

Where ci/build_vendor.sh has built enroot and pyxis (RECIPE_VENDOR_DIR, default /opt/recipe-vendor),
the cluster loads pyxis and gives each node its own enroot configuration under the cluster's
state dir (see tests/services/slurm_cluster.sh); `cluster.containers` says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "tests" / "services" / "slurm_cluster.sh"
# Read at import: the suite's autouse fixture clears RECIPE_* from each test's environment.
VENDOR = Path(os.environ.get("RECIPE_VENDOR_DIR", "/opt/recipe-vendor"))
ENROOT_LAUNCHER = Path("/usr/local/bin/enroot")  # installed by ci/build_vendor.sh


def containers_built() -> bool:
    return (VENDOR / "pyxis" / "spank_pyxis.so").is_file() and (VENDOR / "enroot" / "bin" / "enroot").is_file() \
        and ENROOT_LAUNCHER.is_file()


@dataclass
class SlurmCluster:
    conf: Path
    state: Path
    containers: bool = False  # pyxis loaded, enroot configured per node

    def enroot_list(self, node: str) -> list[str]:
        """`enroot list` with node NODE's enroot configuration (what pyxis there sees)."""
        env = self.env(RECIPE_ENROOT_NODE_ENV=str(self.state / "nodes" / node / "enroot.env"))
        p = subprocess.run([str(ENROOT_LAUNCHER), "list"], env=env, capture_output=True, text=True, timeout=60,
                           check=False)
        assert p.returncode == 0, p.stderr
        return p.stdout.split()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECIPE_", "SLURM_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PYTHONPATH"] = str(ROOT)  # the checkout under test, also for `recipe` in the jobs
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, NodeList...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_job(self, job_id: str, timeout: float) -> dict[str, str]:
        """Poll until the job has finished; fail the test if it is still going after `timeout` s."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(0.5)
        self.run("scancel", job_id)
        pytest.fail(f"job {job_id} still {info.get('JobState')} after {timeout} s")

    def steps(self, job_id: str) -> dict[str, str]:
        """Running steps of a job: step name -> step id (JOB.STEP)."""
        out = self.run("squeue", "-h", "-s", "-j", job_id, "-o", "%i %j").stdout
        return {name: sid for sid, name in (line.split(None, 1) for line in out.splitlines() if " " in line)}


def processes_of_job(job_id: str, conf: Path) -> list[str]:
    """Processes still alive that belong to the job: SLURM_JOB_ID and our SLURM_CONF in their environment."""
    want = {f"SLURM_JOB_ID={job_id}".encode(), f"SLURM_CONF={conf}".encode()}
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = set((d / "environ").read_bytes().split(b"\0"))
            if want <= env:
                argv = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{d.name}: {argv}")
        except OSError:
            continue
    return found


def assert_not_in_any_argv(values) -> None:
    """No process on this host has any of these values on its command line (secrets travel by name)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes()
            except OSError:
                continue
            assert not any(v.encode() in argv for v in values), f"secret in argv of pid {d.name}"


def assert_job_gone(cluster: SlurmCluster, job: str, timeout: float = 30) -> None:
    """No process of the job is left on this host, and Slurm lists none of its steps."""
    deadline = time.monotonic() + timeout
    left = processes_of_job(job, cluster.conf)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes_of_job(job, cluster.conf)
    assert not left, f"processes of job {job} still running: {left}"
    assert not cluster.steps(job)


@pytest.fixture(name="slurm_cluster", scope="session")
def slurm_cluster_fixture():
    reuse = os.environ.get("RECIPE_TEST_SLURM_CONF")
    if reuse:
        state = Path(reuse).parent
        yield SlurmCluster(conf=Path(reuse), state=state, containers=(state / "nodes").is_dir())
        return
    if not (shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged")):
        msg = "Slurm test cluster needs slurm-wlm and munge (apt-get install slurm-wlm munge)"
        if os.environ.get("RECIPE_REQUIRE_SLURM") == "1" or os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    state = Path(tempfile.mkdtemp(prefix="recipe-slurm-"))
    env = dict(os.environ)
    env.pop("RECIPE_VENDOR_DIR", None)
    containers = containers_built()
    if containers:
        env["RECIPE_VENDOR_DIR"] = str(VENDOR)
    p = subprocess.run(["bash", str(CLUSTER_SH), "start", str(state), "2"], capture_output=True, text=True,
                       timeout=120, check=False, env=env)
    if p.returncode != 0:
        subprocess.run(["bash", str(CLUSTER_SH), "stop", str(state)], capture_output=True, timeout=120, check=False)
        pytest.fail(f"test Slurm cluster did not start: {p.stderr[-2000:]}")
    try:
        yield SlurmCluster(conf=state / "slurm.conf", state=state, containers=containers)
    finally:
        subprocess.run(["bash", str(CLUSTER_SH), "stop", str(state)], capture_output=True, timeout=120, check=False)
        shutil.rmtree(state, ignore_errors=True)
