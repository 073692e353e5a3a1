"""Check a tree of files against a checksum manifest: sizes first, then sha256 in parallel.

SHA-256 is serial within a file, so the speed limit is all files hashed at once, one core each
(what bench/bench_verify.py measures as the concurrent limit). Files are hashed in threads (hashlib
and file reads release the GIL on large buffers), largest first, each thread reading into one
reusable buffer that fits a core's cache: memory is bounded by workers x chunk.

A file is hashed only while it holds still: its stamps (size, mtime, ctime, inode, device) are
taken before and after reading it, from the open file and from its path, and any difference makes
it "changed" (exit 5), never "ok". With a VerifyCache, a file whose stamps all equal those
recorded after an earlier hash is trusted without reading it; the result says, per file, whether
it was hashed or trusted.

A file is accepted only against a hash the manifest holds: its sha256, or for an entry pinned by
revision its git blob id. An entry whose blob id is `unknown` is never ok ("unpinned", exit 4),
whatever a download checked it against: that id came from the server that sent the file. Such a
file is often code run with trust_remote_code; `recipe lock NAME --trust-fetched` pins it on purpose.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.errors import EXIT_CORRUPT, EXIT_MISSING, EXIT_OK, UsageError
from runner.inputs import manifest as mf
from runner.inputs.pinned import STAGING_DIR
from runner.inputs.verify_cache import Stamps, VerifyCache

__all__ = ["STAGING_DIR", "verify_manifest", "hash_file", "hash_stable"]

CHUNK = 1 << 20  # fits a core's L2, so the hasher reads what the copy just wrote from cache

OK, MISSING, SIZE, MISMATCH = "ok", "missing", "size", "mismatch"
UNREADABLE, SKIPPED, CHANGED = "unreadable", "skipped", "changed"
PINNED = "pinned"  # no sha256 in the manifest; content matches the git blob id the manifest holds
UNPINNED = "unpinned"  # no hash in the manifest at all (git-blob: unknown): never ok
STATUSES = (OK, PINNED, MISSING, SIZE, MISMATCH, CHANGED, UNREADABLE, UNPINNED, SKIPPED)
GOOD = (OK, PINNED)
HASHED, TRUSTED = "hashed", "trusted"


@dataclass
class FileResult:
    path: str
    status: str
    expected_size: int | None
    expected_sha256: str | None
    size: int | None = None
    sha256: str | None = None
    error: str | None = None
    how: str | None = None  # "hashed" or "trusted" (stamps unchanged since the cache recorded it)
    git_blob: str | None = None  # pinned-only entries: the blob id their content was checked against

    def describe(self) -> str:
        if self.status == MISSING:
            return f"missing     {self.path}"
        if self.status == SIZE:
            return f"wrong size  {self.path}: {self.size} bytes, expected {self.expected_size}"
        if self.status == MISMATCH:
            want = self.expected_sha256 or f"git blob {self.git_blob}"
            return f"corrupt     {self.path}: sha256 {self.sha256}, expected {want}"
        if self.status == CHANGED:
            return f"changed     {self.path}: {self.error}; nothing can be said of its content"
        if self.status == UNREADABLE:
            return f"unreadable  {self.path}: {self.error}"
        if self.status == SKIPPED:
            return f"not hashed  {self.path} (other files failed the size check)"
        if self.status == UNPINNED:
            return (f"unpinned    {self.path}: the manifest holds no hash of it (git-blob: unknown), so nothing "
                    f"tells it from any other file of that size (its sha256 is {self.sha256}); read it, then "
                    f"pin it on purpose: recipe lock NAME --trust-fetched")
        if self.status == PINNED:
            return (f"pinned      {self.path}: by the git blob id in the manifest, sha256 not yet recorded; "
                    f"content matches git blob {self.git_blob} (sha256 {self.sha256})")
        return f"ok          {self.path}"


@dataclass
class VerifyResult:
    root: str
    manifest: str
    manifest_sha256: str
    files: list[FileResult]
    extra: list[str] = field(default_factory=list)
    bytes_hashed: int = 0
    seconds: float = 0.0
    workers: int = 1
    cache: str | None = None  # the cache file used, if any
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def ok(self) -> bool:
        return all(f.status in GOOD for f in self.files)

    @property
    def exit_code(self) -> int:
        """EXIT_CORRUPT if any content is wrong, changing or unreadable, else EXIT_MISSING if any file
        is absent, of the wrong size or unpinned (including files left unhashed because of that),
        else 0."""
        if self.count(MISMATCH) or self.count(UNREADABLE) or self.count(CHANGED):
            return EXIT_CORRUPT
        if self.count(MISSING) or self.count(SIZE) or self.count(SKIPPED) or self.count(UNPINNED):
            return EXIT_MISSING
        return EXIT_OK

    @property
    def problems(self) -> list[FileResult]:
        return [f for f in self.files if f.status not in GOOD]

    @property
    def pinned(self) -> list[FileResult]:
        return [f for f in self.files if f.status == PINNED]

    def summary(self) -> dict:
        """What a run record stores: verdict, counts, the problems, how each file was checked
        (hashed, or trusted from the cache), and which manifest was used."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "root": self.root,
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "files": len(self.files),
            "bytes": sum(f.expected_size or 0 for f in self.files),
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "counts": {s: self.count(s) for s in STATUSES},
            "hashed": sum(1 for f in self.files if f.how == HASHED),
            "trusted": sum(1 for f in self.files if f.how == TRUSTED),
            "checked": {f.path: f.how for f in self.files},
            "cache": self.cache,
            "problems": [asdict(f) for f in self.problems],
            "pinned_only": [{"path": f.path, "git_blob": f.git_blob, "sha256": f.sha256} for f in self.pinned],
            "extra": self.extra,
            "warnings": self.warnings,
        }


class ChangedWhileHashing(OSError):
    """The file moved under the reader: its content at no one moment was what was hashed."""


@dataclass(frozen=True)
class Hashed:
    sha256: str
    stamps: Stamps  # the file's stamps, identical before and after reading it
    git_blob: str | None = None


def _diff(a: Stamps, b: Stamps) -> str:
    return ", ".join(k for k in ("size", "mtime_ns", "ctime_ns", "ino", "dev") if getattr(a, k) != getattr(b, k))


def hash_stable(path: Path, chunk: int = CHUNK, on_bytes: Callable[[int], None] | None = None,
                git_blob: bool = False) -> Hashed:
    """sha256 (and optionally the git blob id) of a file that did not change while it was read:
    ChangedWhileHashing if its stamps differ before and after, or the bytes read are not its size,
    or its path names another file by then."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        before = Stamps.of(os.fstat(f.fileno()))
        blob = hashlib.sha1(mf.git_blob_header(before.size)) if git_blob else None
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(view):
            h.update(view[:n])
            if blob:
                blob.update(view[:n])
            total += n
            if on_bytes:
                on_bytes(n)
        after = Stamps.of(os.fstat(f.fileno()))
    if after != before:
        raise ChangedWhileHashing(f"changed while it was being hashed ({_diff(before, after)} moved)")
    if total != before.size:
        raise ChangedWhileHashing(f"read {total} bytes of a {before.size}-byte file")
    now = Stamps.of(os.stat(path))
    if now != before:
        raise ChangedWhileHashing(f"replaced or changed while it was being hashed ({_diff(before, now)} moved)")
    return Hashed(h.hexdigest(), before, blob.hexdigest() if blob else None)


def hash_file(path: Path, chunk: int = CHUNK,
              on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex, bytes read) of a file that held still while it was read."""
    r = hash_stable(path, chunk, on_bytes)
    return r.sha256, r.stamps.size


def default_workers(n_files: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_files))


def verify_manifest(manifest: str | os.PathLike | mf.Manifest, root: str | os.PathLike, *,
                    workers: int | None = None, chunk: int = CHUNK,
                    progress: Callable[[int], None] | None = None,
                    hash_after_size_failure: bool = False,
                    scan_extra: Iterable[str] | None = ("",), ignore: Iterable[str] = (),
                    cache: VerifyCache | None = None, rehash: bool = False) -> VerifyResult:
    """Verify every file of `manifest` under `root`.

    Unsafe paths raise UnsafePathError before anything is read. If a file is missing or of the
    wrong size, the others are not hashed (status "skipped") unless `hash_after_size_failure`,
    so a truncated download fails in milliseconds. `scan_extra`: sub-directories of root (""
    = all of it) in which files not in the manifest are reported; None skips the scan. `ignore`:
    more root-relative paths that are not "extra" (the manifest itself is never extra).
    `cache`: trust files whose stamps it recorded (unless `rehash`), and record what was hashed.
    """
    started = time.monotonic()
    if isinstance(manifest, mf.Manifest):
        m, where, text = manifest, "<manifest>", mf.render(manifest)
        if not m.entries:
            raise UsageError("manifest lists no file; an empty manifest checks nothing")
    else:
        where = str(Path(manifest).resolve())
        text = mf.read_text(manifest)
        m = mf.parse(text, str(manifest))
    root = Path(root)
    targets = {e.path: mf.resolve_inside(root, e.path) for e in m.entries}  # refuses escapes first

    results: dict[str, FileResult] = {}
    expect: dict[str, str | None] = {}  # the sha256 each file must have; None: pinned by revision
    to_hash: list[mf.Entry] = []
    for e in m.entries:
        want, blob = e.sha256, (e.git_blob if e.git_blob != mf.UNKNOWN else None)
        r = FileResult(e.path, OK, e.size, want, git_blob=blob)
        results[e.path], expect[e.path] = r, want
        try:
            st = os.stat(targets[e.path])
        except FileNotFoundError:
            r.status = MISSING
            continue
        except OSError as err:
            r.status, r.error = UNREADABLE, err.strerror or str(err)
            continue
        r.size = st.st_size
        if not os.path.isfile(targets[e.path]):
            r.status, r.error = UNREADABLE, "not a regular file"
            continue
        if e.size is not None and st.st_size != e.size:
            r.status = SIZE
            continue
        if cache is not None and not rehash and want is not None:
            known = cache.lookup(e.path, Stamps.of(st))
            if known == want:  # a recorded sha256 that disagrees is hashed again, never reported from memory
                r.sha256, r.how, r.status = known, TRUSTED, OK
                if progress and st.st_size:
                    progress(st.st_size)
                continue
        to_hash.append(e)

    size_failed = any(r.status in (MISSING, SIZE) for r in results.values())
    if size_failed and not hash_after_size_failure:
        for e in to_hash:
            results[e.path].status = SKIPPED
        to_hash = []

    to_hash.sort(key=lambda e: -(results[e.path].size or 0))  # longest first balances the workers
    n_workers = workers or default_workers(len(to_hash))
    hashed = [0]
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            hashed[0] += n
        if progress:
            progress(n)

    def one(e: mf.Entry) -> None:
        r = results[e.path]
        want = expect[e.path]
        try:
            got = hash_stable(targets[e.path], chunk, count, git_blob=e.pinned_only)
        except ChangedWhileHashing as err:
            r.status, r.error = CHANGED, str(err)
            if cache is not None:
                cache.forget(e.path)
            return
        except OSError as err:
            r.status, r.error = UNREADABLE, err.strerror or str(err)
            return
        r.sha256, r.how = got.sha256, HASHED
        if e.pinned_only:  # checked against the manifest's git blob id, or not at all
            if r.git_blob is None:
                r.status = UNPINNED
            elif got.git_blob != r.git_blob:
                r.status = MISMATCH
            else:
                r.status = PINNED
            return
        if got.sha256 != want:
            r.status = MISMATCH
            if cache is not None:
                cache.forget(e.path)
            return
        r.status = OK
        if cache is not None:
            cache.record(e.path, got.stamps, got.sha256)

    if to_hash:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="verify") as pool:
            list(pool.map(one, to_hash))
    warnings: list[str] = []
    if cache is not None:
        cache.save()
        warnings = list(cache.warnings)

    listed = set(targets) | set(ignore)
    if where != "<manifest>":
        listed.add(os.path.relpath(where, root.resolve()).replace(os.sep, "/"))
    extra = find_extra(root, listed, scan_extra) if scan_extra is not None else []
    return VerifyResult(root=str(root.resolve()), manifest=where, manifest_sha256=mf.sha256_text(text),
                        files=[results[e.path] for e in m.entries], extra=extra, bytes_hashed=hashed[0],
                        seconds=time.monotonic() - started, workers=n_workers,
                        cache=str(cache.path) if cache is not None else None, warnings=warnings)


def find_extra(root: Path, listed: set[str], subdirs: Iterable[str]) -> list[str]:
    """Files under root/<subdir> that the manifest does not list (symlinks not followed)."""
    extra: set[str] = set()
    for sub in subdirs:
        base = root / sub if sub else root
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != STAGING_DIR]
                rel_dir = ""
            # __pycache__, and .cache: `hf download --local-dir` bookkeeping, not an input
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".cache")]
            for name in filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if rel not in listed:
                    extra.add(rel.replace(os.sep, "/"))
    return sorted(extra)


def default_cache(root: str | os.PathLike) -> VerifyCache:
    """The verified-inputs cache of `root` where `recipe verify` and the run preflight keep it."""
    return VerifyCache(root)
