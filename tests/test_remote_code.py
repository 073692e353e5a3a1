"""A model whose config.json has an `auto_map` needs its .py files in the model directory.

miles loads the HF config with `AutoConfig.from_pretrained(path, trust_remote_code=True)` first
thing (radixark/miles, miles/utils/hf_config.py at 78527b9102b3a5f15891128cbec3ac6c2dc4089e);
Nemotron-3-Nano's config.json names configuration_nemotron_h.py and modeling_nemotron_h.py there.
These tests use the loopback Hub with a tiny repo of the same shape and the real transformers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_hub import (
    REMOTE_CODE_REPO,
    SmallRepos,
    hub_env,
    hub_fixture,
    make_bundle,
    recipe_cli,
    remote_code_files,
    small_repos_fixture,
)
from hub_server import FakeRepo, HubServer, git_blob_oid

from runner.errors import EXIT_CORRUPT, EXIT_MISSING, RecipeError
from runner.inputs import manifest as mf
from runner.inputs import pinned as pin
from runner.inputs import tagmanifest
from runner.inputs.fetch import fetch_manifest, sources_from_header
from runner.inputs.hub_pins import build_manifest, diff
from runner.inputs.verify import UNPINNED, verify_manifest
from runner.recipe import Recipe, load_recipe_dir

CONFIG_PY = "model/configuration_tiny_remote.py"
MODELING_PY = "model/modeling_tiny_remote.py"


@pytest.fixture(autouse=True)
def _no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@dataclass
class Remote:
    recipe: Recipe  # pinned to the remote-code repo
    rev: str
    files: dict[str, bytes]  # the repo's files at rev
    hub: HubServer


@pytest.fixture
def remote(small_repos: SmallRepos, tmp_path) -> Remote:
    repo = small_repos.hub.add_repo(FakeRepo(REMOTE_CODE_REPO, "model"))
    files = remote_code_files()
    rev = repo.add_revision(files)
    bundle = make_bundle(tmp_path, small_repos, model_rev=rev, model_repo=REMOTE_CODE_REPO)
    return Remote(load_recipe_dir(bundle / "recipes" / "tiny_hub"), rev, files, small_repos.hub)


def autoconfig(model_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """What miles does first: AutoConfig.from_pretrained(dir, trust_remote_code=True), in a fresh
    process with its own HF_HOME (transformers copies the remote code into HF_HOME/modules)."""
    code = ("import sys; from transformers import AutoConfig; "
            "c = AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True); "
            "print(type(c).__name__, c.model_type, c.hidden_size, c.n_groups)")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home_autoconfig"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code, str(model_dir)], env=env, capture_output=True, text=True,
                          timeout=300)


def pinned_only(m: mf.Manifest, *paths: str) -> mf.Manifest:
    """The manifest as committed before anyone could ask the Hub: those files by size alone."""
    entries = [mf.Entry(e.path, None, e.size, mf.UNKNOWN) if e.path in paths else e for e in m.entries]
    return mf.Manifest(m.header, entries, m.comments)


def test_lock_pins_the_remote_code_by_sha256_and_git_blob_and_fetch_makes_autoconfig_work(remote, tmp_path):
    recipe, files, hub = remote.recipe, remote.files, remote.hub
    m = build_manifest(recipe, None, endpoint=hub.url)
    byp = m.by_path()
    for rel in (CONFIG_PY, MODELING_PY, "model/config.json"):
        data = files[rel.removeprefix("model/")]
        assert (byp[rel].sha256, byp[rel].size, byp[rel].git_blob) == \
            (hashlib.sha256(data).hexdigest(), len(data), git_blob_oid(data))
    assert byp["model/model.safetensors"].git_blob is None  # LFS: the tree's blob id is the pointer's
    root = tmp_path / "in"
    fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    assert verify_manifest(m, root).ok
    r = autoconfig(root / "model", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["TinyRemoteConfig", "tiny_remote", "24", "3"]


def test_without_the_remote_code_autoconfig_fails_as_miles_would(remote, tmp_path):
    """The failure this pin prevents: the directory without the .py files."""
    recipe, hub = remote.recipe, remote.hub
    m = build_manifest(recipe, None, endpoint=hub.url)
    m.entries = [e for e in m.entries if not e.path.endswith(".py")]
    root = tmp_path / "in"
    fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    r = autoconfig(root / "model", tmp_path)
    assert r.returncode != 0 and "configuration_tiny_remote" in r.stderr


def test_remote_code_the_manifest_holds_no_hash_of_is_refused_even_when_fetch_checked_it(remote, tmp_path):
    """fetch checks such a file only against the git blob id the serving endpoint gives, so a hostile
    endpoint (HF_ENDPOINT, a proxy, a mirror) serves any same-size code consistently; verify, and so
    the run's inputs preflight, must not call it ok."""
    recipe, rev, files, hub = remote.recipe, remote.rev, remote.files, remote.hub
    m = pinned_only(build_manifest(recipe, None, endpoint=hub.url), CONFIG_PY, MODELING_PY)
    text = mf.render(m)
    assert f"# git-blob: unknown {CONFIG_PY}" in text and f"  {CONFIG_PY}" not in text
    assert mf.parse(text).by_path()[CONFIG_PY] == mf.Entry(CONFIG_PY, None, len(files["configuration_tiny_remote.py"]),
                                                           mf.UNKNOWN)
    evil = files["configuration_tiny_remote.py"].replace(b"hidden_size=8", b"hidden_size=9")
    hub.repos[("model", REMOTE_CODE_REPO)].revisions[rev]["configuration_tiny_remote.py"] = evil  # tree, ETag agree
    root = tmp_path / "in"
    r = fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    assert r.pinned[CONFIG_PY] == (git_blob_oid(evil), hashlib.sha256(evil).hexdigest())
    assert pin.load(root)[CONFIG_PY]["revision"] == rev

    v = verify_manifest(m, root)
    got = {f.path: f for f in v.files}
    assert not v.ok and v.exit_code == EXIT_MISSING
    assert got[CONFIG_PY].status == got[MODELING_PY].status == UNPINNED
    line = got[CONFIG_PY].describe()
    assert line.startswith(f"unpinned    {CONFIG_PY}: the manifest holds no hash of it") and "--trust-fetched" in line


def test_the_runs_inputs_preflight_refuses_unpinned_remote_code(remote, tmp_path):
    from types import SimpleNamespace

    from runner.launch.preflight import check_inputs

    recipe, hub = remote.recipe, remote.hub
    m = pinned_only(build_manifest(recipe, None, endpoint=hub.url), CONFIG_PY)
    mf.write(m, recipe.path("manifest"))
    root = tmp_path / "in"
    fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    c = check_inputs(SimpleNamespace(recipe=recipe, inputs_dir=root, rehash=False))  # what a launch carries
    assert c.status == "fail" and f"first: {CONFIG_PY} (unpinned)" in c.detail, c


def test_trust_fetched_pins_only_the_bytes_fetch_downloaded(remote, tmp_path):
    recipe, hub = remote.recipe, remote.hub
    full = build_manifest(recipe, None, endpoint=hub.url)
    root = tmp_path / "in"
    m = pinned_only(full, CONFIG_PY, MODELING_PY)
    with pytest.raises(RecipeError) as e:
        pin.pin_fetched(m, root)
    assert e.value.code == EXIT_MISSING and f"{CONFIG_PY}: no `recipe fetch` under {root}" in e.value.message
    fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    good = (root / CONFIG_PY).read_bytes()
    (root / CONFIG_PY).write_bytes(good.replace(b"hidden_size=8", b"hidden_size=9"))  # changed since fetch
    with pytest.raises(RecipeError) as e:
        pin.pin_fetched(m, root)
    assert e.value.code == EXIT_CORRUPT and "nothing pinned" in e.value.message
    (root / CONFIG_PY).write_bytes(good)
    new, pinned = pin.pin_fetched(m, root)
    assert all(new.by_path()[p] == full.by_path()[p] for p in (CONFIG_PY, MODELING_PY))
    assert [e.path for e, _ in pinned] == [CONFIG_PY, MODELING_PY]
    assert verify_manifest(new, root).ok


def test_fetch_refuses_remote_code_whose_git_blob_is_not_the_pinned_one(remote, tmp_path):
    recipe, hub = remote.recipe, remote.hub
    m = pinned_only(build_manifest(recipe, None, endpoint=hub.url), CONFIG_PY)
    hub.corrupt.add(f"{REMOTE_CODE_REPO}/configuration_tiny_remote.py")  # same size, ETag still the real blob
    root = tmp_path / "in"
    with pytest.raises(RecipeError) as e:
        fetch_manifest(m, root, sources_from_header(m), endpoint=hub.url)
    assert e.value.code == EXIT_CORRUPT and f"{CONFIG_PY}: git blob mismatch" in e.value.message
    assert not (root / CONFIG_PY).exists() and CONFIG_PY not in pin.load(root)


def test_a_manifest_blob_id_the_hub_disagrees_with_fails_before_downloading(remote, tmp_path):
    recipe, hub = remote.recipe, remote.hub
    full = build_manifest(recipe, None, endpoint=hub.url)
    m = mf.Manifest(full.header, [mf.Entry(e.path, None, e.size, "0" * 40) if e.path == CONFIG_PY else e
                                  for e in full.entries])
    hub.requests.clear()  # lock downloaded the file to hash it; fetch must not
    with pytest.raises(RecipeError) as e:
        fetch_manifest(m, tmp_path / "in", sources_from_header(m), endpoint=hub.url)
    assert e.value.code == EXIT_CORRUPT and "the Hub's git blob id at this revision is" in e.value.message
    assert hub.gets("configuration_tiny_remote.py") == []


def test_lock_reports_a_repo_file_the_manifest_leaves_out_and_fills_in_pinned_entries(remote, tmp_path):
    recipe, rev, hub = remote.recipe, remote.rev, remote.hub
    full = build_manifest(recipe, None, endpoint=hub.url)
    assert "model/.gitattributes" not in full.by_path() and "model/README.md" in full.by_path()
    old = pinned_only(mf.Manifest(full.header, [e for e in full.entries if e.path != MODELING_PY]), CONFIG_PY)
    findings: list[str] = []
    new = build_manifest(recipe, old, endpoint=hub.url, findings=findings)
    assert len(findings) == 1 and findings[0].startswith(f"{MODELING_PY}: in {REMOTE_CODE_REPO} at {rev[:12]}")
    assert new.by_path()[CONFIG_PY] == full.by_path()[CONFIG_PY]  # sha256 and blob id now recorded
    (change,) = diff(old, new)
    assert change.startswith(f"~ {CONFIG_PY}: sha256 (none) -> ") and "git blob unknown -> " in change


def test_cli_fetch_refuses_unpinned_remote_code_until_lock_trust_fetched_pins_it_with_a_warning(remote, tmp_path):
    recipe, hub = remote.recipe, remote.hub
    bundle = recipe.dir.parent.parent
    env = hub_env(hub, tmp_path, bundle, RECIPE_CACHE_DIR=str(tmp_path / "cache"))
    full = build_manifest(recipe, None, endpoint=hub.url)
    man = recipe.path("manifest")
    mf.write(pinned_only(full, CONFIG_PY, MODELING_PY), man)  # as the committed nemotron3_nano manifest is
    tagmanifest.write(recipe)
    inputs = tmp_path / "inputs"
    f = recipe_cli(["fetch", "tiny_hub", "--inputs", str(inputs)], env)
    assert f.returncode == 0, f.stderr
    assert "2 file(s) have no hash in inputs.sha256" in f.stdout and "recipe lock tiny_hub --trust-fetched" in f.stdout
    v = recipe_cli(["verify", "tiny_hub", "--inputs", str(inputs)], env)
    assert v.returncode == EXIT_MISSING and f"unpinned    {CONFIG_PY}" in v.stdout, v.stdout + v.stderr
    coreutils = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=inputs, capture_output=True, text=True)
    assert coreutils.returncode == 0 and CONFIG_PY not in coreutils.stdout  # a comment to it, skipped

    p = recipe_cli(["lock", "tiny_hub", "--trust-fetched", "--inputs", str(inputs)], env)
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and all("execute this code (trust_remote_code)" in w for w in warnings)
    assert warnings[0].startswith(f"warning: {CONFIG_PY}: pinning sha256 {full.by_path()[CONFIG_PY].sha256}")
    assert mf.load(man).by_path()[CONFIG_PY] == full.by_path()[CONFIG_PY]
    assert recipe_cli(["verify", "tiny_hub", "--recipe-files"], env).returncode == 0  # tag manifest rewritten
    v = recipe_cli(["verify", "tiny_hub", "--inputs", str(inputs)], env)
    assert v.returncode == 0, v.stdout + v.stderr
    assert recipe_cli(["lock", "tiny_hub", "--trust-fetched", "--check"], env).returncode == 2


def test_lock_from_the_hub_warns_when_it_first_pins_remote_code(remote, tmp_path):
    recipe, hub = remote.recipe, remote.hub
    env = hub_env(hub, tmp_path, recipe.dir.parent.parent)
    full = build_manifest(recipe, None, endpoint=hub.url)
    mf.write(pinned_only(full, CONFIG_PY), recipe.path("manifest"))
    r = recipe_cli(["lock", "tiny_hub", "--no-image"], env)
    assert r.returncode == 0, r.stderr
    (line,) = [w for w in r.stderr.splitlines() if w.startswith("warning: ")]
    assert line.startswith(f"warning: {CONFIG_PY}: pinning sha256 ") and hub.url in line


__all__ = ["hub_fixture", "small_repos_fixture"]  # fixtures used by name
