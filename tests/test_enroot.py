"""`recipe image sqsh` and the enroot/pyxis checks.

These put a stand-in `enroot` on PATH (a small script that prints a chosen version and, for
`import`, records its argv and writes the output file): they test our version check against
versions we cannot install side by side (3.x), failures on demand and the command we build. The
real enroot 4.1.2 imports the real image in tests/test_pyxis_cluster.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import clean_env, recipe

from runner.errors import UsageError
from runner.image import enroot
from runner.launch.backends import slurm as slurm_backend

DIGEST = "sha256:cd40db923225c4146e90fdf4aa04bc000b71c1e980cc42df6f368de7545eaa09"
SQSH = f"radixark+miles+sha256-{DIGEST.split(':')[1]}.sqsh"
PLANTED = {"WANDB_API_KEY": "sk-test-PLANTED-wandb-4242", "REGISTRY_PASSWORD": "pw-test-PLANTED-4242"}

FAKE_ENROOT = r"""#!/usr/bin/env bash
# Stand-in for enroot (not installable here): prints a version, records `import` argv as JSON.
set -euo pipefail
case "$1" in
  version) echo "$FAKE_ENROOT_VERSION" ;;
  import)
    python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >>"$FAKE_ENROOT_LOG"
    out=""
    while [[ $# -gt 0 ]]; do
      case "$1" in -o | --output) out=$2; shift 2 ;; *) shift ;; esac
    done
    printf 'hsqs-partial' >"$out"
    exit "${FAKE_ENROOT_RC:-0}"
    ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def fake_enroot(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "enroot"
    exe.write_text(FAKE_ENROOT)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bindir


def sqsh(fake_bin: Path, out: Path, version: str, *args: str, **env: str):
    e = clean_env(PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}", FAKE_ENROOT_VERSION=version,
                  FAKE_ENROOT_LOG=str(out.parent / "enroot.log"), **PLANTED, **env)
    return recipe("image", "sqsh", "nemotron3_nano", "--output-dir", str(out), *args, env=e)


def calls(out: Path) -> list[list[str]]:
    log = out.parent / "enroot.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_imports_by_digest_into_a_file_named_by_digest(fake_enroot, tmp_path):
    out = tmp_path / "images"
    p = sqsh(fake_enroot, out, "4.1.0")
    assert p.returncode == 0, p.stderr
    final = out / SQSH
    assert p.stdout.strip() == str(final) and final.read_bytes() == b"hsqs-partial"
    [argv] = calls(out)
    assert argv[0] == "import" and argv[1] == "--output"
    assert argv[2].startswith(str(out / f".{SQSH}.partial-"))  # written under a temporary name first
    assert argv[3] == f"docker://radixark/miles@{DIGEST}"
    assert not any(v in " ".join(argv) + p.stderr + p.stdout for v in PLANTED.values())
    assert sorted(x.name for x in out.iterdir()) == [SQSH]

    again = sqsh(fake_enroot, out, "4.1.0")  # keyed by digest: nothing to redo
    assert again.returncode == 0 and "nothing to do" in again.stderr and len(calls(out)) == 1


def test_refuses_enroot_older_than_4_for_a_digest(fake_enroot, tmp_path):
    out = tmp_path / "images"
    p = sqsh(fake_enroot, out, "3.5.0")
    assert p.returncode == 3, p.stderr
    assert "enroot 3.5.0 cannot import by digest (needs >= 4.0); stage instead" in p.stderr
    assert "docker pull" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert calls(out) == [] and not out.exists()


def test_failed_import_leaves_no_file(fake_enroot, tmp_path):
    out = tmp_path / "images"
    p = sqsh(fake_enroot, out, "4.0.1", FAKE_ENROOT_RC="1")
    assert p.returncode == 1 and "enroot import exited 1" in p.stderr
    assert list(out.iterdir()) == []  # neither the final name nor the partial file


def test_dry_run_prints_the_command(fake_enroot, tmp_path):
    out = tmp_path / "images"
    p = sqsh(fake_enroot, out, "4.1.0", "--dry-run")
    assert p.returncode == 0 and p.stdout.startswith("enroot import --output ")
    assert p.stdout.strip().endswith(f"docker://radixark/miles@{DIGEST}") and calls(out) == []


def test_missing_enroot(tmp_path):
    p = recipe("image", "sqsh", "nemotron3_nano", "--output-dir", str(tmp_path),
               env=clean_env(PATH="/nonexistent"))
    assert p.returncode == 3 and "enroot not found on PATH" in p.stderr


def test_unparseable_enroot_version(fake_enroot, tmp_path):
    p = sqsh(fake_enroot, tmp_path / "images", "garbage")
    assert p.returncode == 3 and "cannot tell the enroot version" in p.stderr


@pytest.mark.parametrize("ref, uri", [
    (f"radixark/miles:v0.1.0@{DIGEST}", f"docker://radixark/miles@{DIGEST}"),
    ("nvcr.io/nvidia/pytorch:24.01-py3", "docker://nvcr.io#nvidia/pytorch:24.01-py3"),
    (f"localhost:5000/team/img@{DIGEST}", f"docker://localhost:5000#team/img@{DIGEST}"),
    ("ubuntu", "docker://ubuntu"),
])
def test_enroot_uri(ref, uri):
    assert enroot.enroot_uri(ref) == uri
    assert enroot.pyxis_image(ref) == uri.removeprefix("docker://")


@pytest.mark.parametrize("ref", ["", "none", "a b", "repo@sha256:xyz", "repo@md5:" + "0" * 32])
def test_bad_references(ref):
    with pytest.raises(UsageError):
        enroot.enroot_uri(ref)


def test_sqsh_name_needs_a_digest():
    assert enroot.sqsh_name(f"radixark/miles:v0.1.0@{DIGEST}") == SQSH
    with pytest.raises(UsageError, match="no @sha256: digest"):
        enroot.sqsh_name("radixark/miles:v0.1.0")


# ---- preflight checks of the slurm backend -----------------------------------------------------

@pytest.mark.parametrize("version, status", [("3.4.1", "fail"), ("4.0.0", "ok"), ("4.1.2", "ok")])
def test_check_enroot(fake_enroot, monkeypatch, version, status):
    monkeypatch.setenv("PATH", f"{fake_enroot}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ENROOT_VERSION", version)
    c = slurm_backend.check_enroot("pyxis", f"radixark/miles@{DIGEST}")
    assert c.status == status, c
    assert slurm_backend.check_enroot("none", "x").status == "n/a"


def test_check_enroot_absent_is_a_warning(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert slurm_backend.check_enroot("pyxis", f"radixark/miles@{DIGEST}").status == "warn"


def test_check_slurm_needs_the_commands_and_an_allocation(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    c = slurm_backend.check_slurm()
    assert c.status == "fail" and "sbatch, srun, scontrol not found" in c.detail
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    if not all(Path("/usr/bin", c).exists() for c in ("sbatch", "srun", "scontrol")):
        pytest.skip("Slurm client commands not installed")
    c = slurm_backend.check_slurm()
    assert c.status == "fail" and "salloc" in c.fix
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert slurm_backend.check_slurm().status == "ok"


def test_container_labels_are_read_from_enroots_rc(tmp_path):
    """enroot import writes the image labels as `# KEY VALUE` lines at the top of /etc/rc."""
    rc = tmp_path / "rc"
    rc.write_text("# io.recipe-bundle.recipes.digest sha256:abc\n# org.opencontainers.image.title recipe-bundle\n"
                  "mkdir -p \"/\" 2> /dev/null\n# not.a.label after code\n")
    assert enroot.container_labels(rc) == {"io.recipe-bundle.recipes.digest": "sha256:abc",
                                           "org.opencontainers.image.title": "recipe-bundle"}
    assert enroot.container_labels(tmp_path / "absent") == {}
