"""Check a tree of files against a checksum manifest: sizes first, then sha256 in parallel.

SHA-256 is serial within a file, so the speed limit is min(files, cores) x one core's rate.
Files are hashed in threads (hashlib and file reads release the GIL on large buffers), largest
first, each thread reading into one reusable buffer: memory is bounded by workers x chunk.
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

from runner.errors import EXIT_CORRUPT, EXIT_MISSING, EXIT_OK
from runner.inputs import manifest as mf

CHUNK = 8 << 20
STAGING_DIR = ".recipe-fetch"  # `recipe fetch` stages partial downloads here; never an "extra" file

OK, MISSING, SIZE, MISMATCH = "ok", "missing", "size", "mismatch"
UNREADABLE, SKIPPED = "unreadable", "skipped"
STATUSES = (OK, MISSING, SIZE, MISMATCH, UNREADABLE, SKIPPED)


@dataclass
class FileResult:
    path: str
    status: str
    expected_size: int | None
    expected_sha256: str
    size: int | None = None
    sha256: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.status == MISSING:
            return f"missing     {self.path}"
        if self.status == SIZE:
            return f"wrong size  {self.path}: {self.size} bytes, expected {self.expected_size}"
        if self.status == MISMATCH:
            return f"corrupt     {self.path}: sha256 {self.sha256}, expected {self.expected_sha256}"
        if self.status == UNREADABLE:
            return f"unreadable  {self.path}: {self.error}"
        if self.status == SKIPPED:
            return f"not hashed  {self.path} (other files failed the size check)"
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

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def ok(self) -> bool:
        return all(f.status == OK for f in self.files)

    @property
    def exit_code(self) -> int:
        """EXIT_CORRUPT if any content is wrong or unreadable, else EXIT_MISSING if any file is absent
        or of the wrong size (including files left unhashed because of that), else 0."""
        if self.count(MISMATCH) or self.count(UNREADABLE):
            return EXIT_CORRUPT
        if self.count(MISSING) or self.count(SIZE) or self.count(SKIPPED):
            return EXIT_MISSING
        return EXIT_OK

    @property
    def problems(self) -> list[FileResult]:
        return [f for f in self.files if f.status != OK]

    def summary(self) -> dict:
        """What a run record stores: verdict, counts, the problems, and which manifest was used."""
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
            "problems": [asdict(f) for f in self.problems],
            "extra": self.extra,
        }


def hash_file(path: Path, chunk: int = CHUNK,
              on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(sha256 hex, bytes read), reading into one reusable buffer."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(view):
            h.update(view[:n])
            total += n
            if on_bytes:
                on_bytes(n)
    return h.hexdigest(), total


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
                    scan_extra: Iterable[str] | None = ("",), ignore: Iterable[str] = ()) -> VerifyResult:
    """Verify every file of `manifest` under `root`.

    Unsafe paths raise UnsafePathError before anything is read. If a file is missing or of the
    wrong size, the others are not hashed (status "skipped") unless `hash_after_size_failure`,
    so a truncated download fails in milliseconds. `scan_extra`: sub-directories of root (""
    = all of it) in which files not in the manifest are reported; None skips the scan. `ignore`:
    more root-relative paths that are not "extra" (the manifest itself is never extra).
    """
    started = time.monotonic()
    if isinstance(manifest, mf.Manifest):
        m, where, text = manifest, "<manifest>", mf.render(manifest)
    else:
        where = str(Path(manifest).resolve())
        try:
            text = Path(manifest).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            mf.load(manifest)  # raises the one-line error
            raise
        m = mf.parse(text, str(manifest))
    root = Path(root)
    targets = {e.path: mf.resolve_inside(root, e.path) for e in m.entries}  # refuses escapes first

    results: dict[str, FileResult] = {}
    to_hash: list[mf.Entry] = []
    for e in m.entries:
        r = FileResult(e.path, OK, e.size, e.sha256)
        results[e.path] = r
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
        elif e.size is not None and st.st_size != e.size:
            r.status = SIZE
        else:
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
        try:
            digest, n = hash_file(targets[e.path], chunk, count)
        except OSError as err:
            r.status, r.error = UNREADABLE, err.strerror or str(err)
            return
        r.sha256 = digest
        if e.size is not None and n != e.size:  # changed while we read it
            r.status, r.size = SIZE, n
        elif digest != e.sha256:
            r.status = MISMATCH

    if to_hash:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="verify") as pool:
            list(pool.map(one, to_hash))

    listed = set(targets) | set(ignore)
    if where != "<manifest>":
        listed.add(os.path.relpath(where, root.resolve()).replace(os.sep, "/"))
    extra = find_extra(root, listed, scan_extra) if scan_extra is not None else []
    return VerifyResult(root=str(root.resolve()), manifest=where, manifest_sha256=mf.sha256_text(text),
                        files=[results[e.path] for e in m.entries], extra=extra, bytes_hashed=hashed[0],
                        seconds=time.monotonic() - started, workers=n_workers)


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


def verify_recipe_inputs(recipe, inputs_dir: str | os.PathLike | None = None, **kw) -> VerifyResult:
    """verify_manifest on a recipe's inputs manifest and inputs root (--inputs > $RECIPE_INPUTS_DIR > ...)."""
    from runner.inputs.layout import inputs_root

    return verify_manifest(recipe.path("manifest"), inputs_root(recipe, inputs_dir), **kw)
