"""The verified-inputs cache: a file hashed once is trusted while nothing about it has changed.

After a file's sha256 is computed, its stat stamps are kept beside it:

    path -> (size, mtime_ns, ctime_ns, inode, device, sha256)

A later verify trusts the recorded sha256 only while *every* stamp still matches. mtime alone is
not enough (anyone can restore it with `touch -d` or `os.utime`); ctime cannot be set back by a
user and moves on every write, chmod or rename; inode and device change when the file is replaced
by another (a new download, `cp` over it, another disk). A file whose ctime is within RACY_NS of
the moment its stamps were taken is not recorded: on file systems whose clock ticks coarsely a
write in that same tick would leave every stamp unchanged (git calls this "racily clean").

One cache file per inputs root, keyed by the root's real path, under $RECIPE_CACHE_DIR, else
$XDG_CACHE_HOME/recipe-bundle, else ~/.cache/recipe-bundle. A moved or copied root gets another
key, so nothing is trusted there until it is hashed. The file is written atomically; a cache
that does not parse, or was written for another root, is ignored with a warning, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runner.atomicfile import write_text_atomic

FORMAT = "recipe-bundle verified-inputs cache"
VERSION = 1
RACY_NS = 2_000_000_000  # > the coarsest timestamp granularity in common use (1 s; FAT's 2 s aside)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Stamps:
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamps:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def cache_dir() -> Path:
    """$RECIPE_CACHE_DIR, else $XDG_CACHE_HOME/recipe-bundle, else ~/.cache/recipe-bundle."""
    if os.environ.get("RECIPE_CACHE_DIR"):
        return Path(os.environ["RECIPE_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: absolute only
    return base / "recipe-bundle"


class VerifyCache:
    """The cache of one inputs root. Thread-safe; `save()` writes it once, atomically, if it changed."""

    def __init__(self, root: str | os.PathLike, directory: str | os.PathLike | None = None,
                 racy_ns: int = RACY_NS):
        self.root = str(Path(root).resolve())
        key = hashlib.sha256(self.root.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = Path(directory if directory is not None else cache_dir()) / "verified" / f"{key}.json"
        self.racy_ns = racy_ns
        self.warnings: list[str] = []
        self._files: dict[str, tuple[Stamps, str]] = {}
        self._dirty = False
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            self.warnings.append(f"{self.path}: cannot read the verified-inputs cache ({e}); hashing everything")
            return
        try:
            self._files = _parse(text, self.root)
        except ValueError as e:
            self.warnings.append(f"{self.path}: verified-inputs cache ignored ({e}); hashing everything, "
                                 f"it will be rewritten")
            self._dirty = True  # replace it with a good one

    def __len__(self) -> int:
        return len(self._files)

    def lookup(self, rel: str, stamps: Stamps) -> str | None:
        """The recorded sha256 of `rel` if every stamp still matches, else None."""
        with self._lock:
            hit = self._files.get(rel)
        return hit[1] if hit and hit[0] == stamps else None

    def record(self, rel: str, stamps: Stamps, sha256: str, now_ns: int | None = None) -> bool:
        """Remember that `rel` with these stamps has this sha256 (False if its ctime/mtime is too
        recent to be trusted later: then it is forgotten instead)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        racy = max(stamps.ctime_ns, stamps.mtime_ns) > now_ns - self.racy_ns
        with self._lock:
            if racy:
                self._dirty |= self._files.pop(rel, None) is not None
                return False
            if self._files.get(rel) != (stamps, sha256):
                self._files[rel] = (stamps, sha256)
                self._dirty = True
        return True

    def forget(self, rel: str) -> None:
        with self._lock:
            self._dirty |= self._files.pop(rel, None) is not None

    def save(self) -> None:
        """Write the cache atomically if it changed; a cache that cannot be written is a warning."""
        with self._lock:
            if not self._dirty:
                return
            doc = {"format": FORMAT, "version": VERSION, "root": self.root,
                   "files": {rel: [s.size, s.mtime_ns, s.ctime_ns, s.ino, s.dev, sha]
                             for rel, (s, sha) in sorted(self._files.items())}}
            text = json.dumps(doc, indent=0, sort_keys=True) + "\n"
            self._dirty = False
        try:
            write_text_atomic(self.path, text)
        except OSError as e:
            self.warnings.append(f"{self.path}: cannot write the verified-inputs cache ({e.strerror or e}); "
                                 f"the next verify hashes everything again")


def _parse(text: str, root: str) -> dict[str, tuple[Stamps, str]]:
    """Every field checked: one wrong value discards the whole cache (it is never half trusted)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} cache")
    if doc.get("root") != root:
        raise ValueError(f"written for root {doc.get('root')!r}, not {root!r}")
    files = doc.get("files")
    if not isinstance(files, dict):
        raise ValueError("no 'files' table")
    out = {}
    for rel, v in files.items():
        ok = (isinstance(v, list) and len(v) == 6 and all(type(x) is int for x in v[:5])
              and isinstance(v[5], str) and _SHA256.fullmatch(v[5]))
        if not ok:
            raise ValueError(f"malformed entry for {rel!r}")
        out[rel] = (Stamps(*v[:5]), v[5])
    return out
