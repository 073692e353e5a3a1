"""Damage tests for `verify_manifest` and `recipe verify`: every kind of bad input tree or manifest."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import EXIT_CORRUPT, EXIT_MISSING, EXIT_USAGE
from runner.inputs import manifest as mf
from runner.inputs.manifest import UnsafePathError
from runner.inputs.verify import MISMATCH, MISSING, OK, SIZE, SKIPPED, UNREADABLE, verify_manifest

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


def test_one_flipped_byte_is_corrupt(tree):
    root, man = tree
    p = root / "model/model-00002-of-00002.safetensors"
    data = bytearray(p.read_bytes())
    data[123_456] ^= 0x01
    p.write_bytes(bytes(data))
    r = verify_manifest(man, root)
    assert statuses(r) == {"model/model-00002-of-00002.safetensors": MISMATCH}
    assert r.exit_code == EXIT_CORRUPT
    bad = r.problems[0]
    assert bad.sha256 == hashlib.sha256(data).hexdigest() and "corrupt" in bad.describe()


def test_truncated_file_fails_on_size_before_anything_is_hashed(tree):
    root, man = tree
    p = root / "model/model-00001-of-00002.safetensors"
    p.write_bytes(p.read_bytes()[:-1])
    r = verify_manifest(man, root)
    assert statuses(r)["model/model-00001-of-00002.safetensors"] == SIZE
    assert r.bytes_hashed == 0 and set(statuses(r).values()) == {SIZE, SKIPPED}
    assert r.exit_code == EXIT_MISSING
    # --all hashes the rest anyway
    r = verify_manifest(man, root, hash_after_size_failure=True)
    assert statuses(r) == {"model/model-00001-of-00002.safetensors": SIZE}


def test_missing_file(tree):
    root, man = tree
    (root / "data/train.jsonl").unlink()
    r = verify_manifest(man, root)
    assert statuses(r)["data/train.jsonl"] == MISSING and r.exit_code == EXIT_MISSING


def test_extra_file_is_reported_not_fatal(tree):
    root, man = tree
    (root / "model" / "modeling_nemotron_h.py").write_text("# not in the manifest\n")
    r = verify_manifest(man, root)
    assert r.ok and r.exit_code == 0
    assert r.extra == ["model/modeling_nemotron_h.py"]


def test_directory_in_place_of_a_file_is_unreadable(tree):
    root, man = tree
    (root / "model/config.json").unlink()
    (root / "model/config.json").mkdir()
    r = verify_manifest(man, root)
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


def test_symlink_out_of_the_root_is_refused_before_reading(tree, tmp_path):
    root, man = tree
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_bytes(FILES["model/config.json"])  # same bytes: still refused
    (root / "model/config.json").unlink()
    (root / "model/config.json").symlink_to(outside / "config.json")
    with pytest.raises(UnsafePathError) as e:
        verify_manifest(man, root, progress=lambda n: pytest.fail("read a byte before refusing"))
    assert "outside the root" in e.value.message and e.value.code == EXIT_CORRUPT


def test_symlinked_directory_out_of_the_root_is_refused(tree, tmp_path):
    root, man = tree
    (root / "data").rename(tmp_path / "data_elsewhere")
    (root / "data").symlink_to(tmp_path / "data_elsewhere")
    with pytest.raises(UnsafePathError):
        verify_manifest(man, root)


def test_symlink_inside_the_root_is_fine(tree):
    root, man = tree
    (root / "blobs").mkdir()
    (root / "model/config.json").rename(root / "blobs" / "abc")
    (root / "model/config.json").symlink_to("../blobs/abc")
    r = verify_manifest(man, root)
    assert r.ok and r.extra == ["blobs/abc"]


def test_malformed_manifest_line_names_the_line(tmp_path):
    man = tmp_path / "m.sha256"
    man.write_text("# header\nnot a checksum line\n")
    with pytest.raises(mf.UsageError, match=r"m.sha256:2: expected '<64 hex sha256>"):
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
    assert doc["counts"]["missing"] == 21 and doc["bytes_hashed"] == 0 and doc["seconds"] < 5


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
