"""The verified-inputs cache: a file is trusted only while every stamp matches what was hashed.

Each test first proves the cache really trusts the intact file (so that a stamp the cache failed
to compare would let the damage through), then damages it and checks that it is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe

from runner.errors import EXIT_CORRUPT, EXIT_USAGE
from runner.inputs import manifest as mf
from runner.inputs.verify import HASHED, MISMATCH, OK, TRUSTED, verify_manifest
from runner.inputs.verify_cache import RACY_NS, Stamps, VerifyCache, cache_dir

RACY_TEST_NS = 50_000_000  # the tests' racy window: well above this file system's timestamp tick
FILES = {"model/weights.safetensors": os.urandom(200_000), "model/config.json": b'{"a": 1}\n',
         "data/train.jsonl": b'{"prompt": "1+1"}\n' * 100}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "inputs"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    man = tmp_path / "inputs.sha256"
    mf.write(mf.Manifest({}, [mf.Entry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in sorted(FILES.items())]),
             man)
    time.sleep(2 * RACY_TEST_NS / 1e9)
    return root, man


def cached(root: Path, tmp_path: Path) -> VerifyCache:
    return VerifyCache(root, tmp_path / "cache", racy_ns=RACY_TEST_NS)


def how(r) -> dict[str, str]:
    return {f.path: f.how for f in r.files}


def warm(root: Path, man: Path, tmp_path: Path) -> None:
    first = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert first.ok and set(how(first).values()) == {HASHED}
    second = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert second.ok and set(how(second).values()) == {TRUSTED} and second.bytes_hashed == 0


def test_unchanged_files_are_trusted_and_the_record_says_so(tree, tmp_path):
    root, man = tree
    warm(root, man, tmp_path)
    r = verify_manifest(man, root, cache=cached(root, tmp_path))
    s = r.summary()
    assert s["trusted"] == 3 and s["hashed"] == 0 and s["checked"] == {p: TRUSTED for p in FILES}
    assert s["cache"] == str(cached(root, tmp_path).path)
    r = verify_manifest(man, root, cache=cached(root, tmp_path), rehash=True)
    assert set(how(r).values()) == {HASHED} and r.bytes_hashed == sum(map(len, FILES.values()))


def test_a_content_change_behind_a_restored_mtime_is_caught_by_ctime(tree, tmp_path):
    root, man = tree
    warm(root, man, tmp_path)
    p = root / "model/weights.safetensors"
    st = p.stat()
    data = bytearray(FILES["model/weights.safetensors"])
    data[1000] ^= 1
    p.write_bytes(bytes(data))  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back, as `touch -r` or rsync -t would
    assert (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    r = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert how(r)["model/weights.safetensors"] == HASHED
    assert {f.path: f.status for f in r.files}["model/weights.safetensors"] == MISMATCH
    assert r.exit_code == EXIT_CORRUPT


def test_a_replaced_file_is_hashed_again(tree, tmp_path):
    root, man = tree
    warm(root, man, tmp_path)
    p = root / "model/config.json"
    st = p.stat()
    tmp = root / "model" / "config.json.new"
    tmp.write_bytes(b'{"a": 2}\n')  # same size, other bytes, another inode
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)
    assert p.stat().st_ino != st.st_ino and p.stat().st_mtime_ns == st.st_mtime_ns
    r = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert how(r)["model/config.json"] == HASHED and r.exit_code == EXIT_CORRUPT


def test_a_moved_root_is_not_trusted(tree, tmp_path):
    root, man = tree
    warm(root, man, tmp_path)
    moved = tmp_path / "moved"
    root.rename(moved)  # same file system: inode, device, ctime... of every file unchanged
    r = verify_manifest(man, moved, cache=cached(moved, tmp_path))
    assert r.ok and set(how(r).values()) == {HASHED}
    # the old root's cache file copied under the new root's key is refused, not trusted
    shutil.copy(cached(root, tmp_path).path, cached(moved, tmp_path).path)
    c = cached(moved, tmp_path)
    assert len(c) == 0 and "written for root" in c.warnings[0]


@pytest.mark.parametrize("damage", [
    lambda p: p.write_text("{not json"),
    lambda p: p.write_bytes(b"\xff\xfe"),
    lambda p: p.write_text(json.dumps({"format": "recipe-bundle verified-inputs cache", "version": 1})),
    lambda p: p.write_text(p.read_text().replace('"model/config.json": [', '"model/config.json": ["x", ')),
])
def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(tree, tmp_path, damage):
    root, man = tree
    warm(root, man, tmp_path)
    damage(cached(root, tmp_path).path)
    r = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert r.ok and set(how(r).values()) == {HASHED}
    assert len(r.warnings) == 1 and "verified-inputs cache" in r.warnings[0]
    assert r.summary()["warnings"] == r.warnings
    again = verify_manifest(man, root, cache=cached(root, tmp_path))  # rewritten whole, atomically
    assert not again.warnings and set(how(again).values()) == {TRUSTED}
    assert [p.name for p in cached(root, tmp_path).path.parent.iterdir()] == [cached(root, tmp_path).path.name]


def test_a_cached_sha256_that_disagrees_with_the_manifest_is_hashed_not_reported(tree, tmp_path):
    root, man = tree
    warm(root, man, tmp_path)
    text = man.read_text().replace(hashlib.sha256(FILES["model/config.json"]).hexdigest(), "0" * 64)
    man.write_text(text)
    r = verify_manifest(man, root, cache=cached(root, tmp_path))
    assert how(r)["model/config.json"] == HASHED and r.exit_code == EXIT_CORRUPT


def test_a_file_written_within_the_racy_window_is_not_recorded(tmp_path):
    c = VerifyCache(tmp_path, tmp_path / "cache")
    now = time.time_ns()
    assert not c.record("a", Stamps(1, now - RACY_NS // 2, now - RACY_NS // 2, 1, 1), "0" * 64, now_ns=now)
    assert c.record("a", Stamps(1, now - 2 * RACY_NS, now - 2 * RACY_NS, 1, 1), "0" * 64, now_ns=now)
    assert c.lookup("a", Stamps(1, now - 2 * RACY_NS, now - 2 * RACY_NS, 1, 1)) == "0" * 64


def test_cache_location_is_recipe_cache_dir_else_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("RECIPE_CACHE_DIR", str(tmp_path / "rc"))
    assert cache_dir() == tmp_path / "rc"
    monkeypatch.delenv("RECIPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "recipe-bundle"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "recipe-bundle"


# ---- through the CLI: `recipe verify` and the run record ---------------------------------------

@pytest.fixture
def echo_bundle(tmp_path):
    bundle = make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")
    time.sleep(RACY_NS / 1e9 + 0.1)  # the copied inputs' ctime must be older than the racy window
    return bundle


def test_run_record_says_per_file_whether_it_was_hashed_or_trusted(echo_bundle, tmp_path):
    env = clean_env(RECIPE_BUNDLE_ROOT=str(echo_bundle), RECIPE_CACHE_DIR=str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    records = []
    for extra in ([], [], ["--rehash"]):
        p = recipe("run", "echo", "--runs-dir", str(runs), *extra, env=env, cwd=echo_bundle)
        assert p.returncode == 0, p.stderr
        newest = max(runs.iterdir(), key=lambda d: d.stat().st_mtime_ns)
        records.append(json.loads((newest / "run.json").read_text())["inputs_verification"]["data"])
    assert records[0]["checked"] == {"data/prompts.tsv": HASHED} and records[0]["trusted"] == 0
    assert records[1]["checked"] == {"data/prompts.tsv": TRUSTED} and records[1]["bytes_hashed"] == 0
    assert records[1]["counts"][OK] == 1 and records[1]["cache"].startswith(str(tmp_path / "cache"))
    # `recipe run --rehash` trusts nothing the cache says
    assert records[2]["checked"] == {"data/prompts.tsv": HASHED} and records[2]["trusted"] == 0


def test_cli_verify_trusts_then_rehash_reads_everything(echo_bundle, tmp_path):
    env = clean_env(RECIPE_BUNDLE_ROOT=str(echo_bundle), RECIPE_CACHE_DIR=str(tmp_path / "cache"))
    docs = [json.loads(recipe("verify", "echo", "--json", *extra, env=env).stdout)
            for extra in ([], [], ["--rehash"])]
    assert [d["trusted"] for d in docs] == [0, 1, 0] and [d["hashed"] for d in docs] == [1, 0, 1]
    text = recipe("verify", "echo", env=env)
    assert text.returncode == 0 and "1 unchanged since hashed, trusted" in text.stdout


@pytest.mark.parametrize("manifest_text,why", [
    ("not a checksum line\n", "inputs.sha256:1: expected '<64 hex sha256>"),
    ("# recipe-bundle inputs manifest\n", "inputs.sha256: lists no file"),
    ("", "inputs.sha256: lists no file"),
])
def test_run_with_a_malformed_manifest_is_a_usage_error_naming_it(echo_bundle, tmp_path, manifest_text, why):
    """Exit 2 and one line naming the manifest, as `recipe verify` says, not exit 3 with the
    "fix" --skip-preflight inputs."""
    (echo_bundle / "recipes" / "echo" / "inputs.sha256").write_text(manifest_text)
    env = clean_env(RECIPE_BUNDLE_ROOT=str(echo_bundle), RECIPE_CACHE_DIR=str(tmp_path / "cache"))
    p = recipe("run", "echo", "--runs-dir", str(tmp_path / "runs"), env=env, cwd=echo_bundle)
    assert p.returncode == EXIT_USAGE, p.stderr
    assert why in p.stderr and "--skip-preflight" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
