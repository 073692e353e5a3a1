"""`recipe lock` against the loopback Hub, and the whole lock -> fetch -> verify path through the CLI."""

from __future__ import annotations

import hashlib
import socket
import subprocess

import pytest
from fixtures_hub import (
    DATA_FILE,
    SmallRepos,
    hub_env,
    hub_fixture,
    make_bundle,
    recipe_cli,
    small_repos_fixture,
)

from runner.errors import EXIT_CORRUPT, EXIT_FAIL, EXIT_PREFLIGHT, RecipeError
from runner.inputs import manifest as mf
from runner.inputs.hub_pins import build_manifest, diff, resolve_image_digest, split_reference
from runner.recipe import load_recipe_dir


@pytest.fixture(autouse=True)
def _no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def served(repos: SmallRepos, rev: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) of what the Hub serves: the ground truth lock must reproduce."""
    out = {f"model/{p}": (hashlib.sha256(d).hexdigest(), len(d))
           for p, d in repos.files_at(rev).items() if p != ".gitattributes"}
    d = repos.data.revisions[repos.data_rev][DATA_FILE]
    out[f"data/{DATA_FILE}"] = (hashlib.sha256(d).hexdigest(), len(d))
    return out


def recipe_for(repos: SmallRepos, tmp_path, rev: str | None = None):
    bundle = make_bundle(tmp_path, repos, model_rev=rev)
    return load_recipe_dir(bundle / "recipes" / "tiny_hub")


def test_lock_from_scratch_equals_the_served_metadata_without_reading_weights(small_repos, tmp_path):
    recipe = recipe_for(small_repos, tmp_path)
    m = build_manifest(recipe, None, endpoint=small_repos.hub.url)
    assert {e.path: (e.sha256, e.size) for e in m.entries} == served(small_repos, small_repos.old_rev)
    assert m.header["model.revision"] == small_repos.old_rev and m.header["data.repo_type"] == "dataset"
    got = [p for meth, p, _ in small_repos.hub.requests if meth == "GET" and "/resolve/" in p]
    assert got and not [p for p in got if p.endswith((".safetensors", ".jsonl"))]  # LFS: metadata only
    assert any(p.endswith("/config.json") for p in got)  # non-LFS: hashed by download (small)


def test_lock_keeps_a_hand_picked_file_set_and_reports_changes(small_repos, tmp_path):
    recipe = recipe_for(small_repos, tmp_path)
    full = build_manifest(recipe, None, endpoint=small_repos.hub.url)
    picked = mf.Manifest(full.header, [e for e in full.entries if e.path != "model/tokenizer.json"])
    moved = recipe_for(small_repos, tmp_path, rev=small_repos.new_rev)  # the pin moves to main
    new = build_manifest(moved, picked, endpoint=small_repos.hub.url)
    assert "model/tokenizer.json" not in new.by_path()
    changes = diff(picked, new)
    assert f"~ header model.revision: {small_repos.old_rev} -> {small_repos.new_rev}" in changes
    assert any(c.startswith("~ model/model-00001-of-00003.safetensors: sha256") for c in changes)
    assert not any("chat_template" in c for c in changes)  # same bytes at both revisions
    assert diff(new, new) == []
    everything = build_manifest(moved, picked, endpoint=small_repos.hub.url, all_files=True)
    assert "+ model/tokenizer.json (44 bytes)" in diff(new, everything)


def test_lock_of_a_revision_that_does_not_exist(small_repos, tmp_path):
    recipe = recipe_for(small_repos, tmp_path, rev="e" * 40)
    with pytest.raises(RecipeError) as e:
        build_manifest(recipe, None, endpoint=small_repos.hub.url)
    assert e.value.code == EXIT_FAIL and f"no revision {'e' * 40}" in e.value.message


def test_lock_refuses_a_branch_and_names_the_commit_to_pin(small_repos, tmp_path):
    recipe = recipe_for(small_repos, tmp_path, rev="main")
    with pytest.raises(RecipeError) as e:
        build_manifest(recipe, None, endpoint=small_repos.hub.url)
    assert e.value.code == 2 and f'revision = "{small_repos.new_rev}"' in e.value.message


def test_lock_of_a_listed_file_the_hub_does_not_have(small_repos, tmp_path):
    recipe = recipe_for(small_repos, tmp_path)
    old = mf.Manifest({}, [mf.Entry("model/gone.safetensors", "0" * 64, 1)])
    with pytest.raises(RecipeError, match="model/gone.safetensors: not in tiny-org/tiny-model"):
        build_manifest(recipe, old, endpoint=small_repos.hub.url)


def test_split_reference():
    assert split_reference("radixark/miles:v0.1.0@sha256:" + "a" * 64) == \
        ("docker.io", "radixark/miles", "v0.1.0", "sha256:" + "a" * 64)
    assert split_reference("ubuntu") == ("docker.io", "library/ubuntu", "latest", None)
    assert split_reference("nvcr.io/nvidia/pytorch:25.01-py3")[:3] == ("nvcr.io", "nvidia/pytorch", "25.01-py3")
    assert split_reference("localhost:5000/x:1")[:2] == ("localhost:5000", "x")


def test_image_digest_when_the_registry_is_not_reachable(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RECIPE_REGISTRY_URL", f"http://127.0.0.1:{port}")
    d = resolve_image_digest("radixark/miles:v0.1.0@sha256:" + "c" * 64, timeout=2)
    assert d.digest is None and "not reachable" in d.describe() and "keeping the pinned" in d.describe()


def test_image_digest_from_a_registry(hub, monkeypatch):
    monkeypatch.setenv("RECIPE_REGISTRY_URL", hub.url)
    hub.images[("radixark/miles", "v0.1.0")] = "sha256:" + "c" * 64
    same = resolve_image_digest("radixark/miles:v0.1.0@sha256:" + "c" * 64)
    assert same.digest == "sha256:" + "c" * 64 and "still resolves" in same.describe()
    moved = resolve_image_digest("radixark/miles:v0.1.0@sha256:" + "d" * 64)
    assert "WARNING" in moved.describe() and "left as is" in moved.describe()
    unknown = resolve_image_digest("radixark/miles:v9@sha256:" + "d" * 64)
    assert unknown.digest is None and "did not resolve the tag" in unknown.describe()


@pytest.mark.slow
def test_cli_lock_fetch_verify_end_to_end(small_repos, tmp_path):
    """The real CLI in subprocesses, HF_ENDPOINT set before huggingface_hub is imported."""
    bundle = make_bundle(tmp_path, small_repos)
    env = hub_env(small_repos.hub, tmp_path, bundle, RECIPE_REGISTRY_URL=small_repos.hub.url)
    small_repos.hub.images[("example/image", "v1")] = "sha256:" + "ab" * 32
    inputs = tmp_path / "inputs"

    r = recipe_cli(["lock", "tiny_hub"], env)
    assert r.returncode == 0, r.stderr
    man = bundle / "recipes" / "tiny_hub" / "inputs.sha256"
    assert "+ model/model-00001-of-00003.safetensors" in r.stdout and "still resolves to the pinned" in r.stdout
    assert (bundle / "recipes" / "tiny_hub" / "recipe.sha256").is_file()
    m = mf.load(man)
    assert {e.path: (e.sha256, e.size) for e in m.entries} == served(small_repos, small_repos.old_rev)

    again = recipe_cli(["lock", "tiny_hub", "--check", "--no-image"], env)
    assert again.returncode == 0 and "no change" in again.stdout, again.stdout + again.stderr

    f = recipe_cli(["fetch", "tiny_hub", "--inputs", str(inputs)], env)
    assert f.returncode == 0, f.stderr
    assert f"{len(m.entries)} downloaded" in f.stdout

    v = recipe_cli(["verify", "tiny_hub", "--inputs", str(inputs)], env)
    assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
    coreutils = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=inputs, capture_output=True)
    assert coreutils.returncode == 0

    rf = recipe_cli(["verify", "tiny_hub", "--recipe-files"], env)
    assert rf.returncode == 0, rf.stdout + rf.stderr
    (bundle / "recipes" / "tiny_hub" / "extra.sh").write_text("echo added\n")  # an added file
    rf = recipe_cli(["verify", "tiny_hub", "--recipe-files"], env)
    assert rf.returncode == EXIT_CORRUPT and "not covered tiny_hub/extra.sh" in rf.stdout
    (bundle / "recipes" / "tiny_hub" / "extra.sh").unlink()
    (bundle / "recipes" / "tiny_hub" / "model_args.txt").write_text("--num-layers 3\n")  # an edit
    rf = recipe_cli(["verify", "tiny_hub", "--recipe-files"], env)
    assert rf.returncode == EXIT_CORRUPT and "tiny_hub/model_args.txt" in rf.stdout

    shard = inputs / "model" / "model-00003-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    v = recipe_cli(["verify", "tiny_hub", "--inputs", str(inputs)], env)
    assert v.returncode == 4 and "wrong size  model/model-00003-of-00003.safetensors" in v.stdout
    f = recipe_cli(["fetch", "tiny_hub", "--inputs", str(inputs)], env)  # repairs just that file
    assert f.returncode == 0 and "1 downloaded" in f.stdout, f.stdout + f.stderr


@pytest.mark.slow
def test_cli_fetch_and_verify_refuse_a_manifest_that_disagrees_with_recipe_toml(small_repos, tmp_path):
    bundle = make_bundle(tmp_path, small_repos)
    env = hub_env(small_repos.hub, tmp_path, bundle)
    assert recipe_cli(["lock", "tiny_hub", "--no-image"], env).returncode == 0
    make_bundle(tmp_path, small_repos, model_rev=small_repos.new_rev)  # pin edited, lock not rerun
    for verb in ("fetch", "verify"):
        r = recipe_cli([verb, "tiny_hub", "--inputs", str(tmp_path / "in")], env)
        assert r.returncode == 2 and "header 'model.revision'" in r.stderr and "recipe lock tiny_hub" in r.stderr


@pytest.mark.slow
def test_cli_says_not_reachable_instead_of_crashing_without_network(small_repos, tmp_path):
    bundle = make_bundle(tmp_path, small_repos)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens here once closed
    env = {**hub_env(small_repos.hub, tmp_path, bundle), "HF_ENDPOINT": dead, "RECIPE_REGISTRY_URL": dead}
    for verb in (["lock", "tiny_hub"], ["lock", "tiny_hub", "--check"],
                 ["fetch", "tiny_hub", "--inputs", str(tmp_path / "in")]):
        if verb[0] == "fetch":
            assert recipe_cli(["lock", "tiny_hub", "--no-image"], hub_env(small_repos.hub, tmp_path, bundle)
                              ).returncode == 0
        r = recipe_cli(verb, env)
        # this machine cannot reach the Hub: 3, never 1 (which `lock --check` gives for "would change")
        assert r.returncode == EXIT_PREFLIGHT, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "cannot reach the Hub for tiny-org/tiny-model" in r.stderr
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr
        if verb[0] == "lock":
            assert "registry not reachable" in r.stdout

__all__ = ["hub_fixture", "small_repos_fixture"]  # fixtures used by name
