"""Checksum manifests in the format `sha256sum -c --strict` reads, with sizes beside them.

    # recipe-bundle inputs manifest ...          free comment
    # model.repo: nvidia/NVIDIA-...              header field `# key: value`
    # size: 4991205008 model/model-00001-of-00013.safetensors
    4c77b0f1...  model/model-00001-of-00013.safetensors

Every line is a `#` comment (ignored by sha256sum) or `<64 hex>  <relative path>`. Sizes ride in
`# size:` comments so a checker can reject a missing or truncated file before reading anything.
Paths are relative to one root; anything that could name a file outside it is refused here,
before a byte is read (symlinks are checked against the real tree in `resolve_inside`).

A file of a Hub repo may also carry its git blob id (the Hub's tree listing gives it for every
file; for a non-LFS file it is the only hash the Hub publishes):

    # size: 12893 model/configuration_x.py
    # git-blob: unknown model/configuration_x.py

An entry with a `# git-blob:` line and no checksum line is *pinned by revision only*: its sha256
is not recorded yet (sha256sum skips it, as it skips every comment; `recipe verify` reports it as
such). Its blob id is 40 hex, or `unknown` where nobody could ask the Hub yet (`recipe fetch`
then checks the download against the blob id the Hub gives for the pinned commit, and `recipe
lock` records both). A `# size:` line alone, with neither, is an error.

A manifest must list at least one file, as `sha256sum -c --strict` requires.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runner.atomicfile import write_text_atomic
from runner.errors import EXIT_CORRUPT, EXIT_USAGE, RecipeError, UsageError

_ENTRY = re.compile(r"^([0-9a-fA-F]{64}) ([ *])(.+)$")
_HEADER = re.compile(r"^# ([a-z][a-z0-9_.]*): (.*)$")
_SIZE = re.compile(r"^# size: (\d+) (.+)$")
_BLOB = re.compile(r"^# git-blob: ([0-9a-f]{40}|unknown) (.+)$")
UNKNOWN = "unknown"  # a value nobody could learn yet; never a guess
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: a longer path cannot name a file at all
MAX_NAME_BYTES = 255  # NAME_MAX: the longest single path component


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    sha256: str | None  # lower-case hex; None: pinned by revision only (see git_blob)
    size: int | None = None  # None: the manifest did not record it (plain sha256sum output)
    git_blob: str | None = None  # the Hub's git blob id (40 hex) or UNKNOWN; None: not recorded

    @property
    def pinned_only(self) -> bool:
        """Pinned by repo revision (and size), its sha256 not yet recorded."""
        return self.sha256 is None


@dataclass
class Manifest:
    header: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # free text lines shown above the header

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

    @property
    def pinned_only(self) -> list[Entry]:
        return [e for e in self.entries if e.pinned_only]

    @property
    def total_size(self) -> int:
        return sum(e.size or 0 for e in self.entries)


class UnsafePathError(RecipeError):
    """A manifest path that could read or write outside its root."""


def check_relpath(path: str, where: str) -> str:
    """Refuse absolute paths, '..', '.', empty components and characters sha256sum escapes."""
    bad = None
    if not path:
        bad = "is empty"
    elif not _utf8(path):
        bad = "is not valid UTF-8"
    elif len(path.encode()) > MAX_PATH_BYTES:
        bad = f"is longer than {MAX_PATH_BYTES} bytes"
    elif path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        bad = "is absolute"
    elif any(c in path for c in "\\\n\r\0"):
        bad = "contains a backslash, newline or NUL"
    else:
        parts = path.split("/")
        if ".." in parts:
            bad = "has a '..' component"
        elif any(p in ("", ".") for p in parts):
            bad = "has an empty or '.' component"
        elif any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
            bad = f"has a component longer than {MAX_NAME_BYTES} bytes"
    if bad:
        shown = repr(path) if len(path) <= 200 else f"{path[:80]!r}... ({len(path)} characters)"
        raise UnsafePathError(f"{where}: path {shown} {bad}; manifest paths must be relative, stay "
                              f"inside the root and name a file this system can open", EXIT_USAGE)
    return path


def _utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:  # a lone surrogate: no file name on disk is spelled so
        return False
    return True


def resolve_inside(root: Path, rel: str) -> Path:
    """root/rel with symlinks resolved; refuse it if that lands outside the (resolved) root."""
    real_root = root.resolve()
    target = (real_root / rel).resolve()
    if target != real_root and real_root not in target.parents:
        raise UnsafePathError(f"{root / rel}: resolves to {target}, outside the root {real_root} "
                              f"(a symlink points out of it); refusing to read it", EXIT_CORRUPT)
    return target


def parse(text: str, where: str = "<manifest>", allow_empty: bool = False) -> Manifest:
    """The manifest in `text`; UsageError (exit 2) naming `where:line` for anything malformed.

    A manifest without one file is malformed unless `allow_empty` (sha256sum -c --strict fails it
    too: "no properly formatted checksum lines found")."""
    m = Manifest()
    sizes: dict[str, tuple[int, int]] = {}
    blobs: dict[str, tuple[str, int]] = {}
    sums: dict[str, str] = {}
    order: list[str] = []
    lines = text.split("\n")  # as sha256sum: "\n" alone ends a line (str.splitlines also splits on \f, \x1c...)
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        loc = f"{where}:{n}"
        if line.startswith("#"):
            if s := _SIZE.match(line):
                rel = check_relpath(s.group(2), loc)
                if rel in sizes:
                    raise UsageError(f"{loc}: a second '# size:' line for {_short(rel)} "
                                     f"(the first is line {sizes[rel][1]})")
                sizes[rel] = (int(s.group(1)), n)
            elif b := _BLOB.match(line):
                rel = check_relpath(b.group(2), loc)
                if rel in blobs:
                    raise UsageError(f"{loc}: a second '# git-blob:' line for {_short(rel)} "
                                     f"(the first is line {blobs[rel][1]})")
                blobs[rel] = (b.group(1), n)
                if rel not in sums and rel not in order:
                    order.append(rel)
            elif line.startswith("# git-blob:"):
                raise UsageError(f"{loc}: expected '# git-blob: <40 hex git blob id, or unknown> <path>', "
                                 f"got {line[:80]!r}")
            elif line.startswith("# size:"):
                raise UsageError(f"{loc}: expected '# size: <bytes> <path>', got {line[:80]!r}")
            elif h := _HEADER.match(line):
                m.header[h.group(1)] = h.group(2).strip()
            elif not m.header and not order:
                m.comments.append(line[1:].strip())
            continue
        e = _ENTRY.match(line)
        if not e:
            raise UsageError(f"{loc}: expected '<64 hex sha256>  <relative path>' or a '#' comment, "
                             f"got {line[:80]!r}")
        rel = check_relpath(e.group(3), loc)
        if rel in sums:
            raise UsageError(f"{loc}: {_short(rel)} is listed twice")
        sums[rel] = e.group(1).lower()
        if rel not in order:
            order.append(rel)
    for rel, (_, n) in sizes.items():
        if rel not in sums and rel not in blobs:
            raise UsageError(f"{where}:{n}: '# size:' line for {_short(rel)}, which has no checksum line "
                             f"(nor a '# git-blob:' line)")
    for rel, (_, n) in blobs.items():
        if rel not in sums and rel not in sizes:
            raise UsageError(f"{where}:{n}: {_short(rel)} is pinned by git blob only; it needs a "
                             f"'# size:' line too")
    m.entries = [Entry(rel, sums.get(rel), sizes.get(rel, (None, 0))[0], blobs.get(rel, (None, 0))[0])
                 for rel in order]
    if not m.entries and not allow_empty:
        raise UsageError(f"{where}: lists no file (no '<sha256>  <path>' line); an empty manifest checks "
                         f"nothing (sha256sum -c --strict fails it too)")
    return m


def _short(rel: str) -> str:
    return rel if len(rel) <= 120 else rel[:100] + "..."


def read_text(path: str | os.PathLike) -> str:
    """The manifest's text; UsageError (exit 2) naming it if it is absent, unreadable or not UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read manifest ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def load(path: str | os.PathLike, allow_empty: bool = False) -> Manifest:
    return parse(read_text(path), str(path), allow_empty=allow_empty)


def render(m: Manifest) -> str:
    lines = [f"# {c}".rstrip() for c in m.comments]
    for key, value in m.header.items():
        if not _HEADER.match(f"# {key}: {value}") or "\n" in value:
            raise ValueError(f"manifest header field {key!r}={value!r} cannot be written")
        lines.append(f"# {key}: {value}")
    for e in m.entries:
        check_relpath(e.path, "manifest entry")
        if e.pinned_only and (e.git_blob is None or e.size is None):
            raise ValueError(f"manifest entry {e.path}: no sha256 needs a size and a git blob id (or unknown)")
        if e.size is not None:
            lines.append(f"# size: {e.size} {e.path}")
        if e.git_blob is not None:
            lines.append(f"# git-blob: {e.git_blob} {e.path}")
        if e.sha256 is not None:
            lines.append(f"{e.sha256}  {e.path}")
    return "\n".join(lines) + "\n"


def write(m: Manifest, path: str | os.PathLike) -> None:
    write_text_atomic(path, render(m))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def git_blob_header(size: int) -> bytes:
    """What git hashes before a file's bytes to get its blob id: sha1(b"blob <size>\\0" + content)."""
    return b"blob %d\0" % size
