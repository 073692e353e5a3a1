"""The sbatch container path submitted by a user who is not root, on the real two-node pyxis/enroot
cluster (tests/fixtures_slurm.py).

The miles image is built to run as root with HOME=/root. pyxis 0.24 passes no remap unless asked
(pyxis_slurmstepd.c sets ENROOT_REMAP_ROOT only for --[no-]container-remap-root) and enroot 4.1.2's
default is ENROOT_REMAP_ROOT=no (conf/enroot.conf.in), so a non-root user's container would run as
that user with their own HOME. recipes/lib/sbatch_job.sh passes --container-remap-root.

The job is the real one: `recipe sbatch --container-runtime pyxis` renders it (as for the tiny recipe),
`sbatch` submits it as `nobody`, and sbatch_job.sh starts its first container step on every node (the
shared-run-directory check, `sh -c ... token DIR HOST`). The image is a minimal one made here with
mksquashfs (bash and coreutils from this host, /root 0700 holding a file, as the miles image keeps
/root/miles): its `sh` records who it runs as, then is bash. The job then fails at Ray, which this
image lacks; only the container's identity is under test. Root only (it opens the test cluster's
munge socket and enroot paths to other users); under CI=true it fails instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from fixtures_docker import IN_CI
from fixtures_slurm import ROOT, SlurmCluster, slurm_cluster_fixture  # noqa: F401

from runner.image import enroot

pytestmark = pytest.mark.slow
USER = "nobody"
SH = """#!/bin/bash
# the test image's sh: on the job's node-check step (sh -c CMD token DIR HOST) record who runs it
if [ "$1" = -c ] && [ "$3" = token ]; then printf '%s %s\\n' "$(id -u)" "$HOME" >"$4/../whoami-$5"; fi
exec /bin/bash "$@"
"""


def skip_or_fail(msg: str) -> None:
    if IN_CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    if not slurm_cluster.containers:
        skip_or_fail("pyxis/enroot not built: run ci/build_vendor.sh (as root) before the tests")
    if os.geteuid() != 0 or not shutil.which("mksquashfs"):
        skip_or_fail("needs root (to open the test cluster to another user) and mksquashfs")
    # What a real cluster gives every user: munge's socket, and enroot paths they may write.
    st = slurm_cluster.state
    os.chmod(st, 0o755)
    os.chmod(st / "munge", 0o755)
    for node in (st / "nodes").iterdir():
        for name in ("runtime", "cache", "data", "tmp"):   # the paths of the node's enroot.env
            (node / "enroot" / name).mkdir(exist_ok=True)
            os.chmod(node / "enroot" / name, 0o1777)
    return slurm_cluster


def image(tmp: Path) -> Path:
    root = tmp / "rootfs"
    for d in ("bin", "etc", "root/miles", "tmp", "dev", "proc", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for tool in ("bash", "id", "mkdir", "printf", "cat"):
        exe = Path(shutil.which(tool) or f"/bin/{tool}")
        shutil.copy(exe, root / "bin" / tool)
        libs = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=False).stdout.split()
        for lib in (w for w in libs if w.startswith("/")):
            dst = root / lib.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                shutil.copy(lib, dst)
    (root / "bin" / "sh").write_text(SH)
    (root / "bin" / "sh").chmod(0o755)
    (root / "root" / "miles" / "train.py").write_text("print('miles')\n")
    (root / "root").chmod(0o700)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    made = tmp / "image.sqsh"
    subprocess.run(["mksquashfs", str(root), str(made), "-noappend", "-quiet", "-all-root"], check=True,
                   capture_output=True)
    # staged as `recipe image sqsh` names it: by a digest (here the file's own; no registry is involved)
    ref = f"test/minimal@sha256:{hashlib.sha256(made.read_bytes()).hexdigest()}"
    out = tmp / "images" / enroot.sqsh_name(ref)
    out.parent.mkdir()
    made.rename(out)
    out.chmod(0o644)
    return ref, out.parent


@pytest.fixture
def shared_tmp():
    """A temp dir the other user can reach (pytest's own lives under a root-only 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="recipe-nonroot-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_non_root_users_job_runs_its_containers_as_the_images_root(cluster, shared_tmp):
    tmp_path = shared_tmp
    user = pwd.getpwnam(USER)
    runs, out = tmp_path / "runs", tmp_path / "out"
    for d in (runs, out):
        d.mkdir()
        os.chown(d, user.pw_uid, user.pw_gid)
    ref, sqsh_dir = image(tmp_path)
    env = cluster.env(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", "nemotron3_nano_tiny", "--nodes", "2",
                        "--gpus-per-node", "0", "--container-runtime", "pyxis", "--image", ref,
                        "--sqsh-dir", str(sqsh_dir),
                        "--bundle-dir", "/opt/recipe-bundle", "--runs-dir", str(runs), "--output-dir", str(out)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    script = tmp_path / "job.sbatch"   # the rendered job, as `recipe sbatch` prints it without --submit
    script.write_text(p.stdout)
    assert "--container-remap-root" in (ROOT / "recipes" / "lib" / "sbatch_job.sh").read_text()
    s = subprocess.run(["runuser", "-u", USER, "--", "env", f"SLURM_CONF={cluster.conf}", "sbatch", "--parsable",
                        str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert s.returncode == 0, s.stderr
    job = s.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(runs.glob("whoami-*"))) < 2:
            if cluster.job(job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
                break
            time.sleep(0.5)
        cluster.wait_job(job, 240)
    finally:
        cluster.run("scancel", job)
    output = "\n".join(f.read_text(errors="replace") for f in runs.glob("*.out"))
    seen = {f.name: f.read_text().split() for f in runs.glob("whoami-*")}
    # without --container-remap-root: {"whoami-n1": ["65534", "/"], ...}, nobody with its own HOME
    assert seen == {"whoami-n1": ["0", "/root"], "whoami-n2": ["0", "/root"]}, f"{seen}\n{output[-3000:]}"
    # made on the host through the container's mount: the submitting user's, not root's
    assert {f.stat().st_uid for f in runs.glob("whoami-*")} == {user.pw_uid}
