"""`recipe doctor` against fake install roots: real .git layouts (loose refs, packed refs, gitdir
files, detached HEAD), real dist-info metadata, real imports in a child interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import clean_env, recipe

from runner import doctor
from runner.gitrefs import GitReadError, head_commit

MILES, SGL, MLM, BRIDGE = ("1" * 40, "2" * 40, "3" * 40, "4" * 40)

LOCK = f"""
schema = 1
[base]
reference = "example/miles:v0@sha256:{'0' * 64}"
[commits.miles]
path = "/root/miles"
commit = "{MILES}"
[commits.sglang]
path = "/sgl-workspace/sglang"
commit = "{SGL}"
[commits.megatron_lm]
path = "/root/Megatron-LM"
commit = "{MLM}"
[commits.megatron_bridge]
distribution = "megatron-bridge"
commit = "{BRIDGE}"
[versions]
torch = "2.11.0"
transformers = "5.12.1"
ray = "unknown"
[kernels]
modules = ["fake_kernel"]
[plugins]
modules = ["fake_bridge.nemotron_h"]
"""


def git_tree(root: Path, path: str, commit: str, style: str = "loose") -> None:
    tree = root / path.lstrip("/")
    gdir = tree / ".git"
    if style == "gitdir":  # a worktree/submodule: .git is a file pointing elsewhere
        real = root / "gitdirs" / tree.name
        real.mkdir(parents=True)
        tree.mkdir(parents=True)
        (tree / ".git").write_text(f"gitdir: {real}\n")
        gdir = real
    else:
        gdir.mkdir(parents=True)
    if style == "detached":
        (gdir / "HEAD").write_text(commit + "\n")
    elif style == "packed":
        (gdir / "HEAD").write_text("ref: refs/heads/miles-main\n")
        (gdir / "packed-refs").write_text(f"# pack-refs with: peeled fully-peeled sorted\n"
                                          f"{'9' * 40} refs/heads/other\n{commit} refs/heads/miles-main\n"
                                          f"^{'8' * 40}\n")
    else:
        (gdir / "HEAD").write_text("ref: refs/heads/main\n")
        (gdir / "refs" / "heads").mkdir(parents=True)
        (gdir / "refs" / "heads" / "main").write_text(commit + "\n")


def dist(site: Path, name: str, version: str, direct_url: dict | None = None) -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (d / "direct_url.json").write_text(json.dumps(direct_url))


def module(site: Path, dotted: str, body: str = "") -> None:
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        pkg = site.joinpath(*parts[:i])
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").touch()
    site.joinpath(*parts[:-1], parts[-1] + ".py").write_text(body)


@pytest.fixture
def image(tmp_path, monkeypatch):
    """A fake image matching LOCK: three source trees, four packages, a kernel and a bridge plugin."""
    root, site = tmp_path / "root", tmp_path / "site"
    git_tree(root, "/root/miles", MILES, "loose")
    git_tree(root, "/sgl-workspace/sglang", SGL, "packed")
    git_tree(root, "/root/Megatron-LM", MLM, "gitdir")
    dist(site, "torch", "2.11.0+cu130")
    dist(site, "transformers", "5.12.1")
    dist(site, "ray", "2.49.1")
    dist(site, "megatron-bridge", "0.2.0",
         {"url": "https://github.com/radixark/Megatron-Bridge", "vcs_info": {"vcs": "git", "commit_id": BRIDGE}})
    module(site, "fake_kernel")
    module(site, "fake_bridge.nemotron_h")
    lock = tmp_path / "image.lock"
    lock.write_text(LOCK)
    monkeypatch.setenv("RECIPE_DOCTOR_ROOT", str(root))
    monkeypatch.setenv("RECIPE_DOCTOR_SITE", str(site))
    monkeypatch.setenv("RECIPE_IMAGE_LOCK", str(lock))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the child interpreter's imports
    monkeypatch.setenv("RECIPE_DOCTOR_GPU", "1")
    return root, site


def rows(rep: doctor.DoctorReport) -> dict[tuple[str, str], doctor.Row]:
    return {(r.kind, r.name): r for r in rep.rows}


def test_matching_image_is_ok(image):
    rep = doctor.run_doctor()
    assert rep.in_image and rep.ok, rep.table()
    r = rows(rep)
    assert {r[("commit", n)].found for n in ("miles", "sglang", "megatron_lm", "megatron_bridge")} == \
        {MILES, SGL, MLM, BRIDGE}
    assert r[("version", "torch")].status == "ok"  # 2.11.0+cu130 is the locked release with a build label
    assert r[("version", "ray")].status == "recorded" and r[("version", "ray")].found == "2.49.1"
    assert r[("kernel", "fake_kernel")].status == "ok"
    assert r[("plugin", "fake_bridge.nemotron_h")].status == "ok"
    assert rep.as_dict()["ok"] is True and "doctor: OK" in rep.table()


def test_wrong_commit_is_a_mismatch(image):
    root, _ = image
    (root / "root/miles/.git/refs/heads/main").write_text("f" * 40 + "\n")
    rep = doctor.run_doctor()
    r = rows(rep)[("commit", "miles")]
    assert (r.status, r.expected, r.found) == ("mismatch", MILES, "f" * 40)
    assert not rep.ok and "miles mismatch" in rep.summary()


def test_missing_package_and_wrong_version(image):
    _, site = image
    for d in site.glob("transformers-*.dist-info"):
        (d / "METADATA").unlink()
        d.rmdir()
    (site / "torch-2.11.0+cu130.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\n"
                                                                     "Version: 2.10.0\n")
    rep = doctor.run_doctor()
    r = rows(rep)
    assert r[("version", "transformers")].status == "missing"
    assert r[("version", "torch")].status == "mismatch" and r[("version", "torch")].found == "2.10.0"
    assert not rep.ok and len(rep.problems()) == 2


def test_broken_kernel_and_missing_plugin(image):
    _, site = image
    (site / "fake_kernel.py").write_text("raise ImportError('libcudart.so.13: cannot open shared object file')\n")
    (site / "fake_bridge" / "nemotron_h.py").unlink()
    r = rows(doctor.run_doctor())
    assert r[("kernel", "fake_kernel")].status == "error" and "libcudart" in r[("kernel", "fake_kernel")].detail
    assert r[("plugin", "fake_bridge.nemotron_h")].status == "missing"


def test_kernels_are_not_imported_without_a_gpu(image, monkeypatch):
    monkeypatch.setenv("RECIPE_DOCTOR_GPU", "0")
    r = rows(doctor.run_doctor())[("kernel", "fake_kernel")]
    assert r.status == "skipped" and "no GPU" in r.detail


def test_bridge_installed_without_vcs_info_is_reported(image):
    _, site = image
    (site / "megatron_bridge-0.2.0.dist-info" / "direct_url.json").unlink()
    r = rows(doctor.run_doctor())[("commit", "megatron_bridge")]
    assert r.status == "mismatch" and "not installed from a VCS URL" in r.detail


def test_outside_the_image(tmp_path, monkeypatch):
    lock = tmp_path / "image.lock"
    lock.write_text(LOCK)
    monkeypatch.setenv("RECIPE_IMAGE_LOCK", str(lock))
    monkeypatch.setenv("RECIPE_DOCTOR_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("RECIPE_DOCTOR_SITE", str(tmp_path / "empty"))
    rep = doctor.run_doctor()
    assert not rep.in_image and not rep.ok
    assert rep.summary().startswith("not the pinned GPU image")


def test_unreadable_git_head_is_an_error_not_a_crash(image):
    root, _ = image
    (root / "root/miles/.git/HEAD").write_text("ref: refs/heads/gone\n")
    r = rows(doctor.run_doctor())[("commit", "miles")]
    assert r.status == "error" and "refs/heads/gone" in r.detail
    with pytest.raises(GitReadError):
        head_commit(root / "root/miles")


def test_cli_exit_codes_and_json(image):
    root, site = image
    env = clean_env(RECIPE_DOCTOR_ROOT=str(root), RECIPE_DOCTOR_SITE=str(site),
                    RECIPE_IMAGE_LOCK=str(Path(site).parent / "image.lock"), RECIPE_DOCTOR_GPU="1",
                    PYTHONPATH=f"{clean_env()['PYTHONPATH']}:{site}")
    p = recipe("doctor", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ok"] is True
    (root / "root/Megatron-LM").rename(root / "root/Megatron-LM.moved")
    p = recipe("doctor", env=env)
    assert p.returncode == 6 and "megatron_lm" in p.stdout and "NOT OK" in p.stdout
    p = recipe("doctor", env=clean_env(RECIPE_DOCTOR_ROOT=str(root / "nowhere"),
                                       RECIPE_IMAGE_LOCK=str(Path(site).parent / "image.lock")))
    assert p.returncode == 3 and "not the pinned GPU image" in p.stdout


def test_bad_lock_is_a_one_line_usage_error(tmp_path):
    bad = tmp_path / "image.lock"
    bad.write_text("[commits\n")
    p = recipe("doctor", env=clean_env(RECIPE_IMAGE_LOCK=str(bad)))
    assert p.returncode == 2 and "not valid TOML" in p.stderr and "Traceback" not in p.stderr


def test_the_shipped_lock_names_every_pin_of_the_recipe():
    import tomllib

    from runner.paths import bundle_root
    from runner.recipe import load_recipe

    lock = tomllib.loads((bundle_root() / "docker/image.lock").read_text())
    r = load_recipe("nemotron3_nano")
    assert lock["base"]["reference"] == r.image
    assert lock["commits"]["miles"]["commit"] == r.commits["miles_commit"]
    assert lock["commits"]["sglang"]["commit"] == r.commits["sglang_commit"]
    assert lock["commits"]["megatron_lm"]["commit"] == r.commits["megatron_lm_commit"]
    assert lock["commits"]["megatron_bridge"]["commit"] == r.commits["megatron_bridge_commit"]
    assert lock["variants"]["cu129"]["digest"] == "unknown"  # never invented
    assert lock["versions"]["ray"] == "unknown"


def test_base_of_the_build_and_unknown_variant_digest(image, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    monkeypatch.setenv("RECIPE_BUNDLE_ROOT", str(bundle))
    r = rows(doctor.run_doctor())
    assert r[("image", "base")].status == "recorded"  # not an image build: nothing to compare
    want = "sha256:" + "0" * 64
    (bundle / "build.json").write_text(json.dumps({"base": f"example/miles:v0@{want}", "base_digest": want,
                                                   "revision": "abc"}))
    rep = doctor.run_doctor()
    assert rows(rep)[("image", "base")].status == "ok" and rep.ok
    other = "sha256:" + "e" * 64
    (bundle / "build.json").write_text(json.dumps({"base": f"cpu@{other}", "base_digest": other}))
    rep = doctor.run_doctor()
    assert rows(rep)[("image", "base")].status == "mismatch" and not rep.ok


def test_shipped_lock_says_the_cu129_digest_is_unknown(monkeypatch):
    monkeypatch.setenv("RECIPE_DOCTOR_ROOT", "/nonexistent-root")
    r = rows(doctor.run_doctor())[("image", "variant cu129")]
    assert r.expected == "unknown" and "digest not known" in r.detail and "v0.1.0-cu12" in r.detail


def test_a_kernel_version_no_source_states_is_recorded_not_refused(tmp_path, monkeypatch):
    """The image installs mamba-ssm and causal-conv1d from its build's prebuilt wheels; 2.3.1 / 1.6.1 are only
    miles' Dockerfile fallback. An image holding others must pass the image check, its versions recorded."""
    import tomllib

    from runner.image.lock import lock_path

    shipped = tomllib.loads(lock_path().read_text())["versions"]
    site = tmp_path / "site"
    dist(site, "mamba-ssm", "2.4.0")
    dist(site, "causal-conv1d", "1.5.2")
    monkeypatch.setenv("RECIPE_DOCTOR_SITE", str(site))
    for name, found in (("mamba-ssm", "2.4.0"), ("causal-conv1d", "1.5.2")):
        row = doctor.check_version(name, shipped[name])
        assert (row.status, row.found) == ("recorded", found), row
