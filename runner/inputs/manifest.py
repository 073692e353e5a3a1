"""Checksum manifests in the format `sha256sum -c --strict` reads, with sizes beside them.

    # recipe-bundle inputs manifest ...          free comment
    # model.repo: nvidia/NVIDIA-...              header field `# key: value`
    # size: 4991205008 model/model-00001-of-00013.safetensors
    4c77b0f1...  model/model-00001-of-00013.safetensors

Every line is a `#` comment (ignored by sha256sum) or `<64 hex>  <relative path>`. Sizes ride in
`# size:` comments so a checker can reject a missing or truncated file before reading anything.
Paths are relative to one root; anything that could name a file outside it is refused here,
before a byte is read (symlinks are checked against the real tree in `resolve_inside`).
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


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    sha256: str  # lower-case hex
    size: int | None = None  # None: the manifest did not record it (plain sha256sum output)


@dataclass
class Manifest:
    header: dict[str, str] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # free text lines shown above the header

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

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
    if bad:
        raise UnsafePathError(f"{where}: path {path!r} {bad}; manifest paths must be relative and stay "
                              f"inside the root", EXIT_USAGE)
    return path



def resolve_inside(root: Path, rel: str) -> Path:
    """root/rel with symlinks resolved; refuse it if that lands outside the (resolved) root."""
    real_root = root.resolve()
    target = (real_root / rel).resolve()
    if target != real_root and real_root not in target.parents:
        raise UnsafePathError(f"{root / rel}: resolves to {target}, outside the root {real_root} "
                              f"(a symlink points out of it); refusing to read it", EXIT_CORRUPT)
    return target


def parse(text: str, where: str = "<manifest>") -> Manifest:
    m = Manifest()
    sizes: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        loc = f"{where}:{n}"
        if line.startswith("#"):
            if s := _SIZE.match(line):
                rel = check_relpath(s.group(2), loc)
                sizes[rel] = (int(s.group(1)), n)
            elif h := _HEADER.match(line):
                m.header[h.group(1)] = h.group(2).strip()
            elif not m.header and not m.entries:
                m.comments.append(line[1:].strip())
            continue
        e = _ENTRY.match(line)
        if not e:
            raise UsageError(f"{loc}: expected '<64 hex sha256>  <relative path>' or a '#' comment, "
                             f"got {line[:80]!r}")
        rel = check_relpath(e.group(3), loc)
        if rel in seen:
            raise UsageError(f"{loc}: {rel} is listed twice")
        seen.add(rel)
        m.entries.append(Entry(rel, e.group(1).lower()))
    for rel, (_, n) in sizes.items():
        if rel not in seen:
            raise UsageError(f"{where}:{n}: '# size:' line for {rel}, which has no checksum line")
    m.entries = [Entry(e.path, e.sha256, sizes.get(e.path, (None, 0))[0]) for e in m.entries]
    return m


def load(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read manifest ({e})") from None
    return parse(text, str(path))


def render(m: Manifest) -> str:
    lines = [f"# {c}".rstrip() for c in m.comments]
    for key, value in m.header.items():
        if not _HEADER.match(f"# {key}: {value}") or "\n" in value:
            raise ValueError(f"manifest header field {key!r}={value!r} cannot be written")
        lines.append(f"# {key}: {value}")
    for e in m.entries:
        check_relpath(e.path, "manifest entry")
        if e.size is not None:
            lines.append(f"# size: {e.size} {e.path}")
        lines.append(f"{e.sha256}  {e.path}")
    return "\n".join(lines) + "\n"


def write(m: Manifest, path: str | os.PathLike) -> None:
    write_text_atomic(path, render(m))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
