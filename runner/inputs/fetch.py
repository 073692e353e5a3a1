"""Download the files of an inputs manifest from the Hugging Face Hub, hashing while downloading.

Each file streams into `<root>/.recipe-fetch/<path>.part` through a sha256 hasher, and is renamed
to its final name only once its size and hash match the manifest, so a final name never holds
unverified bytes and no second full read is needed. An interrupted download resumes with an HTTP
Range request from the end of its .part file (whose bytes are re-hashed once, being from an
earlier process). Files renamed into place are recorded in `.recipe-fetch/verified.json` with
the verify cache's stamps (size, mtime, ctime, inode, device: see verify_cache.py), so a re-run
skips them without reading them again while none has moved.

A file the manifest pins by revision only (its sha256 not recorded yet: see manifest.py) is
checked against its git blob id instead, computed while downloading: the manifest's, or where
that says `unknown`, the one the Hub names for the path at the pinned commit (the ETag of a
non-LFS file). Its sha256 is then recorded in `.recipe-fetch/pinned.json` (see pinned.py).

Ctrl-C or SIGTERM (KeyboardInterrupt in the main thread) stops the workers between chunks; each
keeps its .part for the next run to resume, and the interrupt goes on at once: workers are daemon
threads, so one stuck on a silent server does not hold the process past a short grace.

Every request is bounded in time (hub_client.py). The token comes from $HF_TOKEN only.
huggingface_hub is imported inside the functions: the CLI must start without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path

from runner.atomicfile import fsync_dir, write_text_atomic
from runner.errors import EXIT_CORRUPT, EXIT_FAIL, EXIT_PREFLIGHT, RecipeError, UsageError
from runner.inputs import manifest as mf
from runner.inputs import pinned as pin
from runner.inputs.hub_client import bounded_session, failure_code, http_lib, hub_errors, hub_token, timeout_s
from runner.inputs.hub_client import one_line as _one_line
from runner.inputs.verify import STAGING_DIR, hash_file
from runner.inputs.verify_cache import Stamps

__all__ = ["Source", "fetch_manifest", "sources_from_header", "check_revision", "file_url", "hub_errors",
           "hub_token", "_one_line", "SMALL_FILE_MAX"]

SMALL_FILE_MAX = 64 << 20  # non-LFS files are fetched whole by `recipe lock` to hash them
STOP_GRACE_S = 2.0  # after an interrupt, how long the workers get to flush their .part files


@dataclass(frozen=True)
class Source:
    """One Hub repository, mapped to the manifest paths under `prefix/`."""

    prefix: str
    repo_id: str
    repo_type: str  # "model" or "dataset"
    revision: str


def sources_from_header(m: mf.Manifest, where: str = "manifest") -> list[Source]:
    out = []
    for kind in ("model", "data"):
        h = m.header
        if f"{kind}.repo" not in h:
            continue
        for key in (f"{kind}.revision", f"{kind}.dir"):
            if not h.get(key):
                raise UsageError(f"{where}: header has '{kind}.repo' but no '{key}'")
        default_type = "model" if kind == "model" else "dataset"
        out.append(Source(h[f"{kind}.dir"], h[f"{kind}.repo"], h.get(f"{kind}.repo_type", default_type),
                          h[f"{kind}.revision"]))
    return out


def file_url(src: Source, filename: str, endpoint: str | None = None) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(src.repo_id, filename, repo_type=src.repo_type, revision=src.revision,
                      endpoint=endpoint)


def check_revision(src: Source, endpoint: str | None = None) -> str:
    """The commit sha the pinned revision names; a clear error if the repo or revision is unknown."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    bounded_session()
    try:
        info = HfApi(endpoint=endpoint, token=hub_token()).repo_info(
            src.repo_id, repo_type=src.repo_type, revision=src.revision, timeout=timeout_s())
    except RevisionNotFoundError:
        raise RecipeError(f"{src.repo_type} repo {src.repo_id} has no revision {src.revision} "
                          f"(pinned in the manifest header)", EXIT_FAIL) from None
    except RepositoryNotFoundError:
        raise RecipeError(f"{src.repo_type} repo {src.repo_id} not found (or gated/private: set HF_TOKEN)",
                          EXIT_FAIL) from None
    except hub_errors() as e:
        what = "cannot reach the Hub" if failure_code(e) == EXIT_PREFLIGHT else "the Hub refused"
        raise RecipeError(f"{what} for {src.repo_id}@{src.revision} ({hub_url(endpoint)}): {_one_line(e)}",
                          failure_code(e)) from None
    if re.fullmatch(r"[0-9a-f]{40}", src.revision) and info.sha and info.sha != src.revision:
        raise RecipeError(f"{src.repo_id}: Hub answered commit {info.sha} for pinned revision {src.revision}",
                          EXIT_FAIL)
    return info.sha or src.revision


def hub_url(endpoint: str | None) -> str:
    if endpoint:
        return endpoint
    from huggingface_hub import constants

    return constants.ENDPOINT


class Stopped(Exception):
    """The fetch was interrupted: this worker stopped between chunks, its .part kept for resume."""


class FileFailure(Exception):
    def __init__(self, path: str, message: str, code: int = EXIT_FAIL):
        super().__init__(f"{path}: {message}")
        self.path, self.code = path, code


@dataclass
class FetchResult:
    downloaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in place and verified
    failed: list[FileFailure] = field(default_factory=list)
    pinned: dict[str, tuple[str, str]] = field(default_factory=dict)  # pinned-only: path -> (git blob, sha256)
    bytes_downloaded: int = 0
    seconds: float = 0.0


class _State:
    """verified.json: final files known to match, path -> [size, mtime_ns, ctime_ns, inode, device, sha256].
    ctime too, as in the verify cache: an in-place edit with its mtime put back must not be skipped."""

    def __init__(self, root: Path):
        self.path = root / STAGING_DIR / "verified.json"
        self.lock = threading.Lock()
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def _key(st: os.stat_result, sha: str) -> list:
        return [*astuple(Stamps.of(st)), sha]

    def known_good(self, rel: str, final: Path, sha: str) -> bool:
        try:
            st = final.stat()
        except OSError:
            return False
        with self.lock:
            return self.data.get(rel) == self._key(st, sha)

    def record(self, rel: str, final: Path, sha: str) -> None:
        with self.lock:
            self.data[rel] = self._key(final.stat(), sha)
            write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")


def fetch_manifest(m: mf.Manifest, root: str | os.PathLike, sources: list[Source], *,
                   endpoint: str | None = None, workers: int = 4, retries: int = 5,
                   progress: Callable[[int], None] | None = None,
                   log: Callable[[str], None] = lambda s: None) -> FetchResult:
    """Make every manifest file present and verified under root. Raises RecipeError if any fails."""
    started = time.monotonic()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[mf.Entry, Source, str, Path]] = []
    for e in m.entries:
        src = next((s for s in sources if e.path.startswith(s.prefix.rstrip("/") + "/")), None)
        if src is None:
            raise UsageError(f"manifest entry {e.path}: no repo for it (paths must start with "
                             f"{' or '.join(s.prefix + '/' for s in sources) or 'a model/data dir'})")
        plan.append((e, src, e.path[len(src.prefix.rstrip("/")) + 1:], mf.resolve_inside(root, e.path)))
    with _exclusive(root):
        return _fetch_planned(plan, root, endpoint, workers, retries, progress, log, started)


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One fetch per inputs root at a time: two would write the same .part files."""
    (root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / STAGING_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecipeError(f"{root}: another `recipe fetch` is writing here; let it finish first",
                              EXIT_FAIL) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _fetch_planned(plan: list[tuple[mf.Entry, Source, str, Path]], root: Path, endpoint: str | None,
                   workers: int, retries: int, progress: Callable[[int], None] | None,
                   log: Callable[[str], None], started: float) -> FetchResult:
    state = _State(root)
    recorder = pin.Recorder(root)
    result = FetchResult()
    rlock = threading.Lock()
    todo = []
    for e, src, name, final in plan:
        rec = pin.matching_record(e, src.revision, recorder.data) if e.pinned_only else None
        sha = rec["sha256"] if rec else e.sha256
        if sha and state.known_good(e.path, final, sha):
            result.skipped.append(e.path)
            if progress and e.size:
                progress(e.size)
        else:
            todo.append((e, src, name, final))
    _check_space(root, [(e, final) for e, _, _, final in todo])
    for src in dict.fromkeys(s for _, s, _, _ in todo):  # model first, in manifest order
        check_revision(src, endpoint)

    stop = threading.Event()

    def one(item: tuple[mf.Entry, Source, str, Path]) -> None:
        e, src, name, final = item
        try:
            if not e.pinned_only and final.is_file() and (e.size is None or final.stat().st_size == e.size):
                if hash_file(final)[0] == e.sha256:  # put there by other means: check it once
                    state.record(e.path, final, e.sha256)
                    with rlock:
                        result.skipped.append(e.path)
                    if progress and e.size:
                        progress(e.size)
                    return
                log(f"{e.path}: present but its sha256 does not match; downloading it again")
            n, resumed, got = _download(e, src, name, root, final, endpoint, retries, progress, log, stop)
            state.record(e.path, final, got.sha256)
            with rlock:
                result.bytes_downloaded += n
                (result.resumed if resumed else result.downloaded).append(e.path)
            if e.pinned_only:
                recorder.add(e.path, src.repo_id, src.revision, e.size, got.git_blob, got.sha256)
                with rlock:
                    result.pinned[e.path] = (got.git_blob, got.sha256)
                if e.git_blob != mf.UNKNOWN:
                    log(f"{e.path}: {n} bytes downloaded, git blob {got.git_blob} matches the manifest")
                else:  # the blob id came from this server: nothing the bundle holds vouches for the bytes
                    log(f"{e.path}: {n} bytes downloaded, sha256 {got.sha256}; the manifest holds no hash of it, only "
                        f"the server's git blob id {got.git_blob} matched: runs refuse it until it is pinned")
            else:
                log(f"{e.path}: {'resumed, ' if resumed else ''}{n} bytes downloaded, sha256 ok"
                    f"{', git blob ok' if got.git_blob else ''}")
        except (FileFailure, OSError) as f:  # OSError: disk full, permissions... on our side
            if isinstance(f, OSError):
                f = FileFailure(e.path, f"cannot write it: {f.strerror or f}")
            with rlock:
                result.failed.append(f)
            log(str(f))

    _run_workers(one, todo, max(1, min(workers, len(todo) or 1)), stop, root, log)
    result.seconds = time.monotonic() - started
    if result.failed:
        code = EXIT_CORRUPT if any(f.code == EXIT_CORRUPT for f in result.failed) else EXIT_FAIL
        names = "; ".join(str(f) for f in result.failed)
        raise RecipeError(f"fetch failed for {len(result.failed)} file(s): {names}", code)
    return result


def _run_workers(one: Callable, todo: list, n: int, stop: threading.Event, root: Path,
                 log: Callable[[str], None]) -> None:
    """one(item) for every item on n daemon threads. An interrupt of the main thread stops them
    between chunks and is re-raised after at most STOP_GRACE_S (a worker blocked on a silent server
    is left behind, and dies with the process); a worker's unexpected error is re-raised here."""
    items = iter(todo)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            with lock:
                item = next(items, None)
            if item is None:
                return
            try:
                one(item)
            except Stopped:
                return
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                errors.append(err)
                stop.set()

    threads = [threading.Thread(target=work, name=f"fetch-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()  # a signal's KeyboardInterrupt interrupts this wait
    except KeyboardInterrupt:
        stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        log(f"fetch stopped; partial downloads are kept under {root / STAGING_DIR} and the next fetch resumes them")
        raise
    if errors:
        raise errors[0]


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _check_space(root: Path, todo: list[tuple[mf.Entry, Path]]) -> None:
    """Refuse at once, rather than at 95%, when the rest cannot fit (parts already there count)."""
    need = 0
    for e, final in todo:
        if final.is_file() and final.stat().st_size == e.size:
            continue  # probably good: it will be hashed, not downloaded
        part = root / STAGING_DIR / (e.path + ".part")
        have = part.stat().st_size if part.is_file() else 0
        need += max(0, (e.size or 0) - have)
    free = free_bytes(root)
    if need > free:
        raise RecipeError(f"{root}: {need / 1e9:.1f} GB still to download but only {free / 1e9:.1f} GB free; "
                          f"free space or pass --inputs on a larger disk", EXIT_PREFLIGHT)


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    git_blob: str | None  # computed when the manifest or the Hub gives a blob id to check it against


class _Hashers:
    """sha256 of the bytes, and their git blob id when one is expected (the size must be known)."""

    def __init__(self, size: int | None, blob: bool):
        self.sha = hashlib.sha256()
        self.blob = hashlib.sha1(mf.git_blob_header(size)) if blob and size is not None else None

    def update(self, data) -> None:
        self.sha.update(data)
        if self.blob:
            self.blob.update(data)


def _download(e: mf.Entry, src: Source, name: str, root: Path, final: Path, endpoint: str | None,
              retries: int, progress: Callable[[int], None] | None,
              log: Callable[[str], None] = lambda s: None,
              stop: threading.Event | None = None) -> tuple[int, bool, Downloaded]:
    """Stream one file into its .part through the hashers; rename it into place if it matches."""
    httpx = http_lib()
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    part = root / STAGING_DIR / (e.path + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    url = file_url(src, name, endpoint)
    want_blob = _check_hub_metadata(e, url, endpoint)
    base_headers = build_hf_headers(token=hub_token())
    base_headers["Accept-Encoding"] = "identity"  # byte ranges must address the stored bytes

    h = _Hashers(e.size, want_blob is not None)
    offset = part.stat().st_size if part.exists() else 0
    if e.size is None or offset > e.size:  # without a known size a partial file cannot be resumed safely
        offset = 0
    stop = stop or threading.Event()
    if offset:
        offset = _hash_prefix(part, offset, h, stop)
        if progress:
            progress(offset)
    resumed = offset > 0
    downloaded = 0
    # Only bytes past the furthest offset yet reached count as progress: a server that ignores the
    # Range and drops the connection at the same byte would otherwise be retried forever.
    failures, furthest = 0, offset
    limit = timeout_s()
    with open(part, "r+b" if part.exists() else "wb") as f:
        f.truncate(offset)
        f.seek(offset)
        while e.size is None or offset < e.size:
            headers = dict(base_headers)
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                with bounded_session().stream("GET", url, headers=headers, follow_redirects=True,
                                              timeout=httpx.Timeout(2 * limit, connect=limit)) as r:
                    hf_raise_for_status(r)
                    if offset and r.status_code == 200:  # server ignored the Range: start over
                        f.seek(0)
                        f.truncate(0)
                        h, offset = _Hashers(e.size, want_blob is not None), 0
                    elif offset and not r.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                        raise FileFailure(e.path, f"server answered range {r.headers.get('Content-Range')!r} "
                                                  f"to a request from byte {offset}")
                    for chunk in r.iter_bytes():  # as they arrive: a cut loses nothing received
                        f.write(chunk)
                        h.update(chunk)
                        offset += len(chunk)
                        downloaded += len(chunk)
                        if offset > furthest:
                            failures, furthest = 0, offset
                        if progress:
                            progress(len(chunk))
                        if stop.is_set():  # what was received stays in the .part
                            f.flush()
                            raise Stopped(e.path)
                if e.size is None:
                    break
                if offset < e.size:
                    raise httpx.RemoteProtocolError("response ended early")
            except httpx.TransportError as err:
                failures += 1
                if failures > retries:
                    f.flush()
                    raise FileFailure(e.path, f"download interrupted at byte {offset} of {e.size} "
                                              f"({_one_line(err)}); {failures} attempt(s) in a row got no "
                                              f"further than byte {furthest}; run fetch again to resume") from None
                log(f"{e.path}: connection lost at byte {offset} ({_one_line(err)}); resuming from there")
                if stop.wait(min(0.2 * 2 ** failures, 5.0)):
                    f.flush()
                    raise Stopped(e.path) from None
            except HfHubHTTPError as err:
                raise FileFailure(e.path, f"Hub refused the download: {_one_line(err)}") from None
        f.flush()
        os.fsync(f.fileno())
    got = Downloaded(h.sha.hexdigest(), h.blob.hexdigest() if h.blob else None)
    if e.size is not None and offset != e.size:
        part.unlink(missing_ok=True)
        raise FileFailure(e.path, f"received {offset} bytes, the manifest says {e.size}", EXIT_CORRUPT)
    if want_blob is not None and got.git_blob != want_blob:
        part.unlink(missing_ok=True)  # never resume from bytes known to be wrong
        raise FileFailure(e.path, f"git blob mismatch: downloaded {got.git_blob}, "
                                  f"{'the manifest' if e.git_blob not in (None, mf.UNKNOWN) else 'the Hub'} says "
                                  f"{want_blob}; the file was not put in place", EXIT_CORRUPT)
    if not e.pinned_only and got.sha256 != e.sha256:
        part.unlink(missing_ok=True)
        raise FileFailure(e.path, f"sha256 mismatch: downloaded {got.sha256}, manifest says {e.sha256}; "
                                  f"the file was not put in place", EXIT_CORRUPT)
    final.parent.mkdir(parents=True, exist_ok=True)
    mf.resolve_inside(root, e.path)  # the parents could have changed into symlinks meanwhile
    os.replace(part, final)
    fsync_dir(final.parent)
    return downloaded, resumed, got


def _check_hub_metadata(e: mf.Entry, url: str, endpoint: str | None) -> str | None:
    """Fail before downloading when the Hub's own size, LFS sha256 or git blob id already disagrees
    with the manifest (a 5 GB shard need not be fetched to learn that). The download is still
    hashed: this only saves time. Returns the git blob id the download must have, if any: the
    manifest's, or for a file pinned by revision only whose blob id the manifest does not know,
    the one the Hub names (a non-LFS file's ETag is its git blob id)."""
    from huggingface_hub import get_hf_file_metadata

    bounded_session()
    try:
        meta = get_hf_file_metadata(url, token=hub_token(), endpoint=endpoint, timeout=timeout_s())
    except hub_errors() as err:
        raise FileFailure(e.path, f"Hub metadata request failed: {_one_line(err)}", failure_code(err)) from None
    if e.size is not None and meta.size is not None and meta.size != e.size:
        raise FileFailure(e.path, f"the Hub has {meta.size} bytes at this revision, the manifest says {e.size}; "
                                  f"nothing downloaded", EXIT_CORRUPT)
    etag = (meta.etag or "").lower()
    if re.fullmatch(r"[0-9a-f]{64}", etag) and not e.pinned_only and etag != e.sha256:  # LFS: the sha256
        raise FileFailure(e.path, f"the Hub's sha256 at this revision is {etag}, the manifest says {e.sha256}; "
                                  f"nothing downloaded", EXIT_CORRUPT)
    hub_blob = etag if re.fullmatch(r"[0-9a-f]{40}", etag) else None
    known = e.git_blob if e.git_blob not in (None, mf.UNKNOWN) else None
    if known and hub_blob and hub_blob != known:
        raise FileFailure(e.path, f"the Hub's git blob id at this revision is {hub_blob}, the manifest says "
                                  f"{known}; nothing downloaded", EXIT_CORRUPT)
    if e.pinned_only and not (known or hub_blob):
        raise FileFailure(e.path, f"pinned by revision only, and the Hub gave no git blob id for it (ETag "
                                  f"{meta.etag!r}) to check the download against; nothing downloaded", EXIT_CORRUPT)
    return known or (hub_blob if e.pinned_only else None)


def _hash_prefix(part: Path, n: int, h: _Hashers, stop: threading.Event) -> int:
    """Feed the first n bytes of an earlier process's partial download to the hashers; bytes fed."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    done = 0
    with open(part, "rb", buffering=0) as f:
        while done < n:
            if stop.is_set():
                raise Stopped(str(part))
            k = f.readinto(view[: min(len(buf), n - done)])
            if not k:
                break
            h.update(view[:k])
            done += k
    return done
