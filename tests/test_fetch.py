"""`fetch_manifest` with the real huggingface_hub client against the loopback Hub."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures_hub import (
    DATA_FILE,
    DATA_REPO,
    MODEL_REPO,
    REPO_ROOT,
    SmallRepos,
    hub_env,
    hub_fixture,
    make_bundle,
    small_repos_fixture,
)

from runner.errors import EXIT_CORRUPT, EXIT_FAIL, EXIT_PREFLIGHT, RecipeError
from runner.inputs import manifest as mf
from runner.inputs import tagmanifest
from runner.inputs.fetch import Source, fetch_manifest, sources_from_header
from runner.inputs.verify import STAGING_DIR, verify_manifest
from runner.recipe import load_recipe_dir

SHARD = "model-00002-of-00003.safetensors"


@pytest.fixture(autouse=True)
def _no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def manifest_for(repos: SmallRepos, rev: str) -> mf.Manifest:
    """What the published hashes say: the files at `rev` (minus .gitattributes) and the data file."""
    files = {f"model/{p}": d for p, d in repos.files_at(rev).items() if p != ".gitattributes"}
    files[f"data/{DATA_FILE}"] = repos.data.revisions[repos.data_rev][DATA_FILE]
    header = {"model.repo": MODEL_REPO, "model.revision": rev, "model.dir": "model",
              "data.repo": DATA_REPO, "data.repo_type": "dataset", "data.revision": repos.data_rev,
              "data.dir": "data"}
    return mf.Manifest(header, [mf.Entry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in sorted(files.items())])


def fetch(m: mf.Manifest, root: Path, repos: SmallRepos, **kw):
    return fetch_manifest(m, root, sources_from_header(m), endpoint=repos.hub.url, **kw)


def test_fetch_at_pinned_revision_gives_that_revisions_bytes(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    r = fetch(m, tmp_path / "in", small_repos)
    assert sorted(r.downloaded) == sorted(e.path for e in m.entries) and not r.failed
    got = (tmp_path / "in" / "model" / SHARD).read_bytes()
    assert got == small_repos.files_at(small_repos.old_rev)[SHARD]
    assert got != small_repos.files_at(small_repos.new_rev)[SHARD]  # main moved on; the pin did not
    assert verify_manifest(m, tmp_path / "in").ok
    # every download asked for the pinned commit, never a branch
    resolves = [p for meth, p, _ in small_repos.hub.requests if "/resolve/" in p]
    assert resolves and all(small_repos.old_rev in p or small_repos.data_rev in p for p in resolves)


def test_downloaded_files_are_hashed_in_flight_not_read_again(small_repos: SmallRepos, tmp_path, monkeypatch):
    import runner.inputs.fetch

    def no_second_read(*a, **k):
        raise AssertionError("a downloaded file was read again to hash it")

    monkeypatch.setattr(runner.inputs.fetch, "hash_file", no_second_read)
    m = manifest_for(small_repos, small_repos.old_rev)
    r = fetch(m, tmp_path / "in", small_repos)
    assert len(r.downloaded) == len(m.entries) and verify_manifest(m, tmp_path / "in").ok


def test_a_second_fetch_into_the_same_root_is_refused_while_one_runs(small_repos: SmallRepos, tmp_path):
    import fcntl
    import os

    root = tmp_path / "in"
    (root / STAGING_DIR).mkdir(parents=True)
    fd = os.open(root / STAGING_DIR / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running fetch holds it
        with pytest.raises(RecipeError, match="another `recipe fetch` is writing here"):
            fetch(manifest_for(small_repos, small_repos.old_rev), root, small_repos)
    finally:
        os.close(fd)
    assert not (root / "model").exists()


def test_rerun_skips_verified_files_without_downloading(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    fetch(m, tmp_path / "in", small_repos)
    n = len(small_repos.hub.requests)
    r = fetch(m, tmp_path / "in", small_repos)
    assert len(r.skipped) == len(m.entries) and not r.downloaded
    assert len(small_repos.hub.requests) == n  # not even the revision check


def test_an_in_place_edit_with_its_mtime_put_back_is_repaired_by_the_next_fetch(small_repos: SmallRepos, tmp_path):
    """The README's answer to exit 5 is `recipe fetch`: its skip-state must see what the verify cache sees."""
    m = manifest_for(small_repos, small_repos.old_rev)
    root = tmp_path / "in"
    fetch(m, root, small_repos)
    p = root / "model" / SHARD
    good = p.read_bytes()
    before = p.stat()
    with open(p, "r+b") as f:  # same inode, same size, one byte changed
        f.write(bytes([good[0] ^ 0xFF]))
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = p.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    r = fetch(m, root, small_repos)
    assert f"model/{SHARD}" in r.downloaded and f"model/{SHARD}" not in r.skipped
    assert p.read_bytes() == good


def test_a_server_ignoring_range_and_cutting_at_the_same_byte_is_given_up_on(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    key = f"{MODEL_REPO}/{SHARD}"
    small_repos.hub.no_range.add(key)
    small_repos.hub.cut_always[key] = 50_000  # every answer starts at byte 0 and ends at byte 50000
    got: list[RecipeError] = []

    def go() -> None:
        try:
            fetch(m, tmp_path / "in", small_repos, retries=2)
        except RecipeError as e:
            got.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), f"still retrying after {len(small_repos.hub.gets(SHARD))} requests"
    (err,) = got
    assert err.code == EXIT_FAIL and "got no further than byte 50000" in err.message
    assert len(small_repos.hub.gets(SHARD)) == 3  # the first try, then 2 retries that made no progress


@pytest.mark.parametrize(("sig", "pause"), [(signal.SIGTERM, 0.1), (signal.SIGINT, 0.1), (signal.SIGTERM, 60)])
def test_an_interrupt_stops_fetch_between_chunks_and_the_next_fetch_resumes(small_repos, tmp_path, sig, pause):
    """`recipe fetch` on a slow server (1 kB per 0.1 s: 20 s and 30 s for two shards) exits 130 at once
    on SIGTERM (scancel, docker stop) or Ctrl-C, not when the files in flight are complete; on a server
    gone silent for a minute (pause 60: the workers are blocked reading), after a short grace."""
    bundle = make_bundle(tmp_path, small_repos)
    recipe_dir = bundle / "recipes" / "tiny_hub"
    m = manifest_for(small_repos, small_repos.old_rev)
    mf.write(m, recipe_dir / "inputs.sha256")
    tagmanifest.write(load_recipe_dir(recipe_dir))
    slow = ["model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]
    for name in slow:
        small_repos.hub.slow[f"{MODEL_REPO}/{name}"] = pause
    inputs = tmp_path / "inputs"
    parts = [inputs / STAGING_DIR / "model" / (name + ".part") for name in slow]
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "fetch", "tiny_hub", "--inputs", str(inputs)],
                            env=hub_env(small_repos.hub, tmp_path, bundle), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # paced: until bytes reach the .part files; silent: until both GETs are answered (1 kB each, then nothing)
        while not (all(p.is_file() and p.stat().st_size >= 4096 for p in parts) if pause < 1 else
                   all(small_repos.hub.gets(name) for name in slow) and all(p.is_file() for p in parts)):
            assert proc.poll() is None and time.monotonic() < deadline, "the slow downloads never started"
            time.sleep(0.1)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert took < 5, f"fetch took {took:.1f} s to stop"
    assert "partial downloads are kept" in err and "Traceback" not in err
    kept = {p.name: p.stat().st_size for p in parts}
    assert all(n < 300_000 for n in kept.values()), kept

    small_repos.hub.slow.clear()
    r = fetch(m, inputs, small_repos)
    if pause < 1:  # the workers stopped between chunks, flushing what they had received
        assert all(kept.values()) and sorted(r.resumed) == [f"model/{name}" for name in slow]
        assert {small_repos.hub.gets(n)[-1][2] for n in slow} == {f"bytes={kept[n + '.part']}-" for n in slow}
    assert verify_manifest(m, inputs).ok


def test_cut_connection_is_resumed_with_a_range_request(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    size = len(small_repos.files_at(small_repos.old_rev)[SHARD])
    small_repos.hub.cut_after[f"{MODEL_REPO}/{SHARD}"] = 50_000
    said: list[str] = []
    r = fetch(m, tmp_path / "in", small_repos, log=said.append)
    assert any(s.startswith(f"model/{SHARD}: connection lost at byte 50000") for s in said)
    assert not r.failed and verify_manifest(m, tmp_path / "in").ok
    gets = small_repos.hub.gets(SHARD)
    assert [g[2] for g in gets] == [None, "bytes=50000-"]
    assert r.bytes_downloaded == sum(e.size for e in m.entries)  # nothing fetched twice
    assert size > 50_000


def test_interrupted_run_leaves_a_part_file_and_the_next_run_resumes_it(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    root = tmp_path / "in"
    small_repos.hub.cut_after[f"{MODEL_REPO}/{SHARD}"] = 70_000
    with pytest.raises(RecipeError) as e:
        fetch(m, root, small_repos, retries=0)  # like a process killed mid-download
    assert e.value.code == EXIT_FAIL and f"model/{SHARD}" in e.value.message and "resume" in e.value.message
    assert not (root / "model" / SHARD).exists()
    part = root / STAGING_DIR / "model" / (SHARD + ".part")
    assert part.stat().st_size == 70_000

    r = fetch(m, root, small_repos)
    assert r.resumed == [f"model/{SHARD}"] and len(r.skipped) == len(m.entries) - 1
    assert small_repos.hub.gets(SHARD)[-1][2] == "bytes=70000-"
    assert r.bytes_downloaded == m.by_path()[f"model/{SHARD}"].size - 70_000
    assert not part.exists() and verify_manifest(m, root).ok


def test_a_server_ignoring_the_range_request_restarts_the_file_cleanly(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    root = tmp_path / "in"
    key = f"{MODEL_REPO}/{SHARD}"
    small_repos.hub.cut_after[key] = 70_000
    with pytest.raises(RecipeError):
        fetch(m, root, small_repos, retries=0)
    small_repos.hub.no_range.add(key)
    r = fetch(m, root, small_repos)
    assert small_repos.hub.gets(SHARD)[-1][2] == "bytes=70000-"  # asked for the rest, got it all
    assert r.resumed == [f"model/{SHARD}"] and verify_manifest(m, root).ok


def test_served_content_not_matching_the_manifest_is_never_put_in_place(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    root = tmp_path / "in"
    small_repos.hub.corrupt.add(f"{MODEL_REPO}/{SHARD}")  # right size, one byte flipped
    with pytest.raises(RecipeError) as e:
        fetch(m, root, small_repos)
    assert e.value.code == EXIT_CORRUPT
    assert f"model/{SHARD}: sha256 mismatch" in e.value.message
    assert not (root / "model" / SHARD).exists()
    assert not (root / STAGING_DIR / "model" / (SHARD + ".part")).exists()  # not resumable garbage
    assert (root / "model" / "config.json").is_file()  # the other files still arrived


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_hub_metadata_disagreeing_with_the_manifest_fails_before_downloading(small_repos, tmp_path, field):
    m = manifest_for(small_repos, small_repos.old_rev)
    e = m.by_path()[f"model/{SHARD}"]
    wrong = mf.Entry(e.path, "0" * 64, e.size) if field == "sha256" else mf.Entry(e.path, e.sha256, e.size + 1)
    m.entries = [wrong if x.path == e.path else x for x in m.entries]
    with pytest.raises(RecipeError) as err:
        fetch(m, tmp_path / "in", small_repos)
    assert err.value.code == EXIT_CORRUPT and f"model/{SHARD}: the Hub" in err.value.message
    assert "nothing downloaded" in err.value.message
    assert small_repos.hub.gets(SHARD) == []  # only a HEAD was sent for it
    assert not (tmp_path / "in" / "model" / SHARD).exists()


def test_not_enough_disk_space_is_refused_before_any_request(small_repos, tmp_path, monkeypatch):
    import runner.inputs.fetch

    m = manifest_for(small_repos, small_repos.old_rev)
    monkeypatch.setattr(runner.inputs.fetch, "free_bytes", lambda path: 1000)  # a nearly full disk
    with pytest.raises(RecipeError) as err:
        fetch(m, tmp_path / "in", small_repos)
    assert err.value.code == EXIT_PREFLIGHT and "only 0.0 GB free" in err.value.message
    assert small_repos.hub.requests == []


def test_revision_that_does_not_exist(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    m.header["model.revision"] = "f" * 40
    with pytest.raises(RecipeError) as e:
        fetch(m, tmp_path / "in", small_repos)
    assert e.value.code == EXIT_FAIL
    assert f"has no revision {'f' * 40}" in e.value.message and MODEL_REPO in e.value.message
    assert not (tmp_path / "in" / "model").exists()


def test_unknown_repo_is_named(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    src = [Source("model", "nobody/nothing", "model", small_repos.old_rev),
           Source("data", DATA_REPO, "dataset", small_repos.data_rev)]
    with pytest.raises(RecipeError, match="nobody/nothing not found"):
        fetch_manifest(m, tmp_path / "in", src, endpoint=small_repos.hub.url)


def test_a_wrong_file_already_in_place_is_replaced_by_a_verified_one(small_repos: SmallRepos, tmp_path):
    m = manifest_for(small_repos, small_repos.old_rev)
    root = tmp_path / "in"
    (root / "model").mkdir(parents=True)
    good = small_repos.files_at(small_repos.old_rev)[SHARD]
    (root / "model" / SHARD).write_bytes(bytes(len(good)))  # right size, wrong bytes
    r = fetch(m, root, small_repos)
    assert f"model/{SHARD}" in r.downloaded
    assert (root / "model" / SHARD).read_bytes() == good


def test_token_comes_from_the_environment_only(small_repos: SmallRepos, tmp_path, monkeypatch):
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir(parents=True, exist_ok=True)
    (hf_home / "token").write_text("hf_fromfile")  # a saved token must never be sent
    m = manifest_for(small_repos, small_repos.old_rev)
    fetch(m, tmp_path / "a", small_repos)
    assert set(small_repos.hub.auth) == {None}
    small_repos.hub.auth.clear()
    monkeypatch.setenv("HF_TOKEN", "hf_fromenv")
    fetch(m, tmp_path / "b", small_repos)
    assert set(small_repos.hub.auth) == {"Bearer hf_fromenv"}


@pytest.mark.slow
def test_a_tree_from_the_stock_hf_download_verifies_against_our_manifest(small_repos, tmp_path):
    """The loopback Hub is faithful enough for `hf download --revision`, and a model dir made by
    the stock tool is checked by our manifest (users need not use `recipe fetch`)."""
    hf = Path(sys.executable).parent / "hf"
    if not hf.exists():
        pytest.skip("the hf CLI is not installed in this environment")
    root = tmp_path / "in"
    r = subprocess.run([str(hf), "download", MODEL_REPO, "--revision", small_repos.old_rev,
                        "--local-dir", str(root / "model")], env=hub_env(small_repos.hub, tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = manifest_for(small_repos, small_repos.old_rev)
    m.entries = [e for e in m.entries if e.path.startswith("model/")]
    result = verify_manifest(m, root)
    assert result.ok and result.extra == ["model/.gitattributes"]

__all__ = ["hub_fixture", "small_repos_fixture"]  # fixtures used by name
