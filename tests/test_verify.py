"""Damage tests for `verify_manifest` and `recipe verify`: every kind of bad input tree or manifest.

The damage tests run twice: plain, and with a warm verified-inputs cache (every file hashed and
recorded before the damage), which must catch the same damage.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.errors import EXIT_CORRUPT, EXIT_MISSING, EXIT_USAGE, UsageError
from runner.inputs import manifest as mf
from runner.inputs.manifest import UnsafePathError
from runner.inputs.verify import (
    CHANGED,
    HASHED,
    MISMATCH,
    MISSING,
    OK,
    SIZE,
    SKIPPED,
    TRUSTED,
    UNREADABLE,
    verify_manifest,
)
from runner.inputs.verify_cache import VerifyCache

REPO = Path(__file__).resolve().parent.parent
FILES = {
    "model/model-00001-of-00002.safetensors": os.urandom(300_000),
    "model/model-00002-of-00002.safetensors": os.urandom(200_001),
    "model/config.json": b'{"model_type": "nemotron_h"}\n',
    "data/train.jsonl": b'{"prompt": "1+1", "label": "2"}\n' * 50,
}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(inputs root, manifest path) for FILES, the manifest written outside the root."""
    root = tmp_path / "inputs"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    m = mf.Manifest({"model.repo": "x/y"}, [mf.Entry(p, hashlib.sha256(d).hexdigest(), len(d))
                                            for p, d in sorted(FILES.items())])
    man = tmp_path / "inputs.sha256"
    mf.write(m, man)
    return root, man


@pytest.fixture(params=["no cache", "warm cache"])
def check(request, tree, tmp_path):
    """verify_manifest as the damage tests call it: plain, or with a cache that already trusts every
    file of the intact tree (so a damage the stamps missed would pass unnoticed)."""
    if request.param == "no cache":
        return verify_manifest
    root, man = tree
    time.sleep(0.06)  # past the racy window below: files written just now are not trusted yet

    def cache() -> VerifyCache:
        return VerifyCache(root, tmp_path / "cache", racy_ns=50_000_000)

    warm = verify_manifest(man, root, cache=cache())
    assert warm.ok and {f.how for f in warm.files} == {HASHED}
    again = verify_manifest(man, root, cache=cache())
    assert {f.how for f in again.files} == {TRUSTED} and again.bytes_hashed == 0
    return lambda *a, **kw: verify_manifest(*a, cache=cache(), **kw)


def statuses(r) -> dict[str, str]:
    return {f.path: f.status for f in r.files if f.status != OK}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", "verify", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_intact_tree_passes_and_reports_what_it_hashed(tree):
    root, man = tree
    r = verify_manifest(man, root)
    assert r.ok and r.exit_code == 0 and not r.extra
    assert r.bytes_hashed == sum(len(d) for d in FILES.values())
    s = r.summary()
    assert s["counts"]["ok"] == 4 and s["manifest_sha256"] == hashlib.sha256(man.read_bytes()).hexdigest()


def test_one_flipped_byte_is_corrupt(tree, check):
    root, man = tree
    p = root / "model/model-00002-of-00002.safetensors"
    data = bytearray(p.read_bytes())
    data[123_456] ^= 0x01
    p.write_bytes(bytes(data))
    r = check(man, root)
    assert statuses(r) == {"model/model-00002-of-00002.safetensors": MISMATCH}
    assert r.exit_code == EXIT_CORRUPT
    bad = r.problems[0]
    assert bad.sha256 == hashlib.sha256(data).hexdigest() and "corrupt" in bad.describe()


def test_truncated_file_fails_on_size_before_anything_is_hashed(tree, check):
    root, man = tree
    p = root / "model/model-00001-of-00002.safetensors"
    p.write_bytes(p.read_bytes()[:-1])
    r = check(man, root)
    assert statuses(r)["model/model-00001-of-00002.safetensors"] == SIZE
    assert r.bytes_hashed == 0 and set(statuses(r).values()) <= {SIZE, SKIPPED}  # (or trusted by the cache)
    assert r.exit_code == EXIT_MISSING
    # --all hashes the rest anyway
    r = check(man, root, hash_after_size_failure=True)
    assert statuses(r) == {"model/model-00001-of-00002.safetensors": SIZE}


def test_missing_file(tree, check):
    root, man = tree
    (root / "data/train.jsonl").unlink()
    r = check(man, root)
    assert statuses(r)["data/train.jsonl"] == MISSING and r.exit_code == EXIT_MISSING


def test_extra_file_is_reported_not_fatal(tree, check):
    root, man = tree
    (root / "model" / "modeling_nemotron_h.py").write_text("# not in the manifest\n")
    r = check(man, root)
    assert r.ok and r.exit_code == 0
    assert r.extra == ["model/modeling_nemotron_h.py"]


def test_directory_in_place_of_a_file_is_unreadable(tree, check):
    root, man = tree
    (root / "model/config.json").unlink()
    (root / "model/config.json").mkdir()
    r = check(man, root)
    assert statuses(r)["model/config.json"] == UNREADABLE and r.exit_code == EXIT_CORRUPT


@pytest.mark.parametrize("bad_path,why", [
    ("../outside.bin", "'..' component"),
    ("model/../../outside.bin", "'..' component"),
    ("/etc/passwd", "is absolute"),
    ("model//config.json", "empty or '.' component"),
    ("model\\config.json", "backslash"),
])
def test_unsafe_manifest_paths_are_refused_before_reading(tmp_path, bad_path, why):
    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"secret")
    man = tmp_path / "m.sha256"
    man.write_text(f"# size: 6 {bad_path}\n{'0' * 64}  {bad_path}\n")
    (tmp_path / "root").mkdir()
    with pytest.raises(UnsafePathError) as e:
        verify_manifest(man, tmp_path / "root")
    assert why in e.value.message and e.value.code == EXIT_USAGE and ":1:" in e.value.message


def test_symlink_out_of_the_root_is_refused_before_reading(tree, tmp_path, check):
    root, man = tree
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_bytes(FILES["model/config.json"])  # same bytes: still refused
    (root / "model/config.json").unlink()
    (root / "model/config.json").symlink_to(outside / "config.json")
    with pytest.raises(UnsafePathError) as e:
        check(man, root, progress=lambda n: pytest.fail("read a byte before refusing"))
    assert "outside the root" in e.value.message and e.value.code == EXIT_CORRUPT


def test_symlinked_directory_out_of_the_root_is_refused(tree, tmp_path, check):
    root, man = tree
    (root / "data").rename(tmp_path / "data_elsewhere")
    (root / "data").symlink_to(tmp_path / "data_elsewhere")
    with pytest.raises(UnsafePathError):
        check(man, root)


def test_symlink_inside_the_root_is_fine(tree, check):
    root, man = tree
    (root / "blobs").mkdir()
    (root / "model/config.json").rename(root / "blobs" / "abc")
    (root / "model/config.json").symlink_to("../blobs/abc")
    r = check(man, root)
    assert r.ok and r.extra == ["blobs/abc"]


def test_malformed_manifest_line_names_the_line(tmp_path):
    man = tmp_path / "m.sha256"
    man.write_text("# header\nnot a checksum line\n")
    with pytest.raises(UsageError, match=r"m.sha256:2: expected '<64 hex sha256>"):
        verify_manifest(man, tmp_path)


def test_cli_exit_codes_and_json(tree):
    root, man = tree
    ok = cli("--manifest", str(man), "--root", str(root), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    (root / "data/train.jsonl").unlink()
    missing = cli("--manifest", str(man), "--root", str(root))
    assert missing.returncode == EXIT_MISSING
    assert "missing     data/train.jsonl" in missing.stdout and "FAILED" in missing.stdout

    (root / "data/train.jsonl").write_bytes(FILES["data/train.jsonl"][::-1])
    corrupt = cli("--manifest", str(man), "--root", str(root), "--json")
    assert corrupt.returncode == EXIT_CORRUPT
    doc = json.loads(corrupt.stdout)
    assert doc["problems"][0]["path"] == "data/train.jsonl" and doc["problems"][0]["status"] == MISMATCH


def test_cli_rejects_mixed_arguments(tree):
    root, man = tree
    r = cli("nemotron3_nano", "--manifest", str(man), "--root", str(root))
    assert r.returncode == EXIT_USAGE and "not both" in r.stderr
    r = cli("--manifest", str(man))
    assert r.returncode == EXIT_USAGE and "--root" in r.stderr


def test_recipe_verify_on_an_empty_inputs_root_says_missing_fast(tmp_path):
    r = cli("nemotron3_nano", "--inputs", str(tmp_path), "--json")
    assert r.returncode == EXIT_MISSING
    doc = json.loads(r.stdout)
    assert doc["counts"]["missing"] == 23 and doc["bytes_hashed"] == 0 and doc["seconds"] < 5


def test_progress_is_drawn_only_when_stderr_is_a_terminal(tree):
    import pty

    root, man = tree
    piped = cli("--manifest", str(man), "--root", str(root))
    assert piped.returncode == 0 and piped.stderr == ""  # logs and CI get no bar
    leader, follower = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "runner.cli", "verify", "--manifest", str(man), "--root",
                            str(root)], cwd=REPO, stdout=subprocess.PIPE, stderr=follower, timeout=60,
                           env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert p.returncode == 0
    assert b"verify " + man.name.encode() in drawn and b"kB" in drawn  # the bar, with a byte count


def test_a_same_size_change_while_hashing_is_caught(tree, check):
    """The bytes already read are rewritten mid-hash (same size, mtime put back): the digest of what
    was read matches the manifest, but the file no longer holds it. Stamps before and after differ
    (ctime moved): "changed", exit 5, never "ok"."""
    root, man = tree
    rel = "model/model-00001-of-00002.safetensors"
    p = root / rel
    st = p.stat()
    done = []

    def rewrite_head(n: int) -> None:
        if not done:
            done.append(n)
            with open(p, "r+b") as f:
                f.write(bytes([FILES[rel][0] ^ 0xFF]))
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    r = check(man, root, chunk=4096, workers=1, progress=rewrite_head, rehash=True)
    assert p.read_bytes() != FILES[rel] and p.stat().st_mtime_ns == st.st_mtime_ns
    assert statuses(r) == {rel: CHANGED} and r.exit_code == EXIT_CORRUPT
    assert "changed while it was being hashed (ctime_ns moved)" in r.problems[0].describe()
    assert check(man, root).exit_code == EXIT_CORRUPT  # afterwards simply corrupt, and never trusted


def test_a_file_replaced_while_hashing_is_caught(tree, check):
    root, man = tree
    rel = "model/model-00001-of-00002.safetensors"  # the largest: hashed first, replaced while hashed
    done = []

    def replace_it(n: int) -> None:
        if not done:
            done.append(n)
            tmp = root / "model" / "new.tmp"
            tmp.write_bytes(os.urandom(len(FILES[rel])))
            os.replace(tmp, root / rel)

    r = check(man, root, chunk=4096, workers=1, progress=replace_it, rehash=True)
    assert statuses(r) == {rel: CHANGED}  # (unlinking the old inode moved its ctime, or the path names a new one)
    assert check(man, root).exit_code == EXIT_CORRUPT


@pytest.mark.parametrize("text", ["", "# recipe-bundle inputs manifest\n# model.repo: x/y\n"])
def test_cli_an_empty_or_header_only_manifest_is_malformed(tree, text):
    """sha256sum -c --strict fails these ("no properly formatted checksum lines"); so must we."""
    root, man = tree
    man.write_text(text)
    r = cli("--manifest", str(man), "--root", str(root))
    assert r.returncode == EXIT_USAGE and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and f"{man}: lists no file" in r.stderr


@pytest.mark.parametrize("lines,why", [
    (["# size: 5 model/config.json", "# size: 5 model/config.json", f"{'0' * 64}  model/config.json"],
     ":2: a second '# size:' line for model/config.json"),
    ([f"{'0' * 64}  model/{'p' * 5_000_000}"], ":1: path 'model/pppp"),
])
def test_cli_duplicate_size_lines_and_huge_paths_are_manifest_errors(tree, lines, why):
    root, man = tree
    man.write_text("\n".join(lines) + "\n")
    r = cli("--manifest", str(man), "--root", str(root))
    assert r.returncode == EXIT_USAGE, r.stdout[-300:] + r.stderr[-300:]
    assert r.stderr.strip().count("\n") == 0 and why in r.stderr and len(r.stderr) < 500
