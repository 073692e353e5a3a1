"""Property-based tests of the manifest parser (hypothesis): whatever the text, a clean answer.

- arbitrary text never gives a traceback: a Manifest, or a RecipeError with a one-line message
  and exit code 2 (malformed) naming where;
- arbitrary paths (shell metacharacters, quotes, spaces, non-ASCII) are data, never code: nothing
  is created or run when they are parsed, rendered and verified, and coreutils reads them the same;
- literal values come back literally: render then parse returns the same entries and header.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import EXIT_USAGE, RecipeError
from runner.inputs import manifest as mf
from runner.inputs.verify import verify_manifest

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
hex40 = st.text("0123456789abcdef", min_size=40, max_size=40)
# a path component: anything a Linux file name may hold that a manifest may hold (no '/', NUL, '\\', CR, LF)
name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00\r\n")
component = st.text(name_chars, min_size=1, max_size=30).filter(
    lambda c: c not in (".", "..") and len(c.encode()) <= 255)
# ...and not drive-like ("C:..."), which the parser refuses as an absolute path of another system
rel_path = st.lists(component, min_size=1, max_size=4).map("/".join).filter(lambda p: not re.match(r"^[A-Za-z]:", p))
shell_path = st.lists(st.sampled_from(["$(touch PWNED)", "`touch PWNED`", "a b", "'q'", '"d"', ";", "&&", "|",
                                       "$HOME", "*", "?", "~", "-rf", "é", "名", "\t", " x "]),
                      min_size=1, max_size=4).map(lambda parts: "/".join(p.strip("/") or "x" for p in parts))
header_key = st.from_regex(r"[a-z][a-z0-9_.]{0,15}", fullmatch=True).filter(lambda k: k != "size")
header_value = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40).map(str.strip)


def entries_strategy(paths=rel_path):
    def entry(path, sha, size, blob, pinned):
        if pinned:
            return mf.Entry(path, None, size if size is not None else 0, blob or mf.UNKNOWN)
        return mf.Entry(path, sha, size, blob)
    one = st.builds(entry, paths, hex64, st.none() | st.integers(0, 2**63), st.none() | hex40 | st.just(mf.UNKNOWN),
                    st.booleans())
    return st.lists(one, min_size=1, max_size=6, unique_by=lambda e: e.path)


@SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text_gives_a_manifest_or_one_clean_line(text):
    try:
        m = mf.parse(text, "fuzz.sha256")
    except RecipeError as e:
        assert e.code == EXIT_USAGE and "\n" not in e.message and e.message.startswith("fuzz.sha256")
    else:
        assert m.entries and all(e.sha256 or e.git_blob for e in m.entries)


@SETTINGS
@given(st.lists(st.one_of(
    st.builds(lambda h, p: f"{h}  {p}", hex64, st.text(max_size=60)),
    st.builds(lambda n, p: f"# size: {n} {p}", st.integers(-5, 10**20), st.text(max_size=60)),
    st.builds(lambda b, p: f"# git-blob: {b} {p}", hex40 | st.just("unknown") | st.text(max_size=5),
              st.text(max_size=60)),
    st.builds(lambda k, v: f"# {k}: {v}", header_key, st.text(max_size=30)),
    st.text(max_size=80)), max_size=12).map("\n".join))
def test_manifest_shaped_text_gives_a_manifest_or_one_clean_line(text):
    """Near misses of every line kind: the parser's interesting inputs."""
    try:
        mf.parse(text, "fuzz.sha256")
    except RecipeError as e:
        assert e.code == EXIT_USAGE and "\n" not in e.message


@SETTINGS
@given(entries_strategy(), st.dictionaries(header_key, header_value, max_size=4))
def test_literal_values_come_back_literally(entries, header):
    m = mf.Manifest(header, entries)
    back = mf.parse(mf.render(m), "m")
    assert back.entries == entries and back.header == header


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(shell_path | rel_path, min_size=1, max_size=4, unique=True).filter(
    lambda ps: not any(a != b and (a.startswith(b + "/") or b.startswith(a + "/")) for a in ps for b in ps)),
    st.binary(max_size=64))
def test_paths_are_data_never_code(paths, data):
    """Files named with shell syntax are created, listed, verified by us and by coreutils: nothing
    runs, nothing appears outside the root, and each name is used exactly as written."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        root.mkdir()
        for p in paths:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_bytes(data + p.encode())
        m = mf.Manifest({"model.repo": "a/b"}, [mf.Entry(p, hashlib.sha256(data + p.encode()).hexdigest(),
                                                         len(data) + len(p.encode())) for p in paths])
        man = tmp / "m.sha256"
        mf.write(m, man)
        before = sorted(os.listdir(tmp))
        r = verify_manifest(man, root)
        assert r.ok and [f.path for f in r.files] == paths and not r.extra
        if shutil.which("sha256sum"):
            c = subprocess.run(["sha256sum", "-c", "--strict", str(man)], cwd=root, capture_output=True)
            assert c.returncode == 0, c.stdout + c.stderr
        assert sorted(os.listdir(tmp)) == before and not list(tmp.rglob("PWNED"))
        assert not Path("PWNED").exists()


@pytest.mark.parametrize("bad", ["\u2028", "\x0c", "\x1c", "\x85"])
def test_only_newline_ends_a_line_as_for_sha256sum(bad):
    """str.splitlines would cut these paths in two; sha256sum does not, and neither do we."""
    path = f"a{bad}b"
    m = mf.parse(f"{'0' * 64}  {path}\n", "m")
    assert [e.path for e in m.entries] == [path]

