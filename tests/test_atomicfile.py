"""runner/atomicfile.py: the one way a file is written under its final name (temp + fsync + rename)."""

from __future__ import annotations

import os

import pytest

from runner.atomicfile import write_text_atomic


def test_writes_the_text_and_nothing_else(tmp_path):
    f = tmp_path / "sub" / "out.txt"
    write_text_atomic(f, "one\ntwo\n")
    assert f.read_text() == "one\ntwo\n"
    assert os.listdir(f.parent) == ["out.txt"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    f = tmp_path / "out.txt"
    write_text_atomic(f, "old\n")
    # A lone surrogate cannot be encoded: the write fails after the temp file was created and
    # part of the text written to it.
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(f, "new " * 10000 + "\udcff")
    assert f.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_replaces_an_existing_file_in_one_step(tmp_path):
    f = tmp_path / "out.txt"
    write_text_atomic(f, "a")
    inode = f.stat().st_ino
    write_text_atomic(f, "b")
    assert f.read_text() == "b" and f.stat().st_ino != inode  # a new file renamed over, not rewritten


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_the_final_file_gets_the_users_umask_not_mkstemps_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        f = tmp_path / "run.json"
        write_text_atomic(f, "{}\n")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == mode
