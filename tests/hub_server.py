"""A small Hugging Face Hub served on 127.0.0.1 for tests (the real huggingface_hub client talks to it).

Routes (what `hf download`, snapshot_download, repo_info and list_repo_tree use):
    GET       /api/{models,datasets}/{repo}/revision/{rev}[?blobs=true]
    GET       /api/{models,datasets}/{repo}/tree/{rev}[?recursive=true]
    HEAD, GET /{repo}/resolve/{rev}/{file}  and  /datasets/{repo}/resolve/{rev}/{file}  (Range: bytes=N-)
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub's do.
It also answers as a container registry: HEAD /v2/{name}/manifests/{tag} -> Docker-Content-Digest
from `images[(name, tag)]`.

Faults for tests: `cut_after[path] = n` closes the connection after n body bytes on the next GET of
that file (once), `cut_always[path] = n` on every GET of it; `slow[path] = s` sends it in
SLOW_PIECE-byte pieces, s seconds apart; `corrupt.add(path)` serves the file with one byte flipped
while advertising the original size and sha256; `no_range.add(path)` ignores Range headers for it
(as some CDNs do). Every request is logged in `requests` as (method, url path, Range), and its
Authorization header in `auth`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".jsonl", ".bin", ".parquet")
SLOW_PIECE = 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    repo_type: str = "model"  # "model" or "dataset"
    revisions: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def add_revision(self, files: dict[str, bytes], ref: str = "main") -> str:
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                           .encode() + self.repo_id.encode() + str(len(self.revisions)).encode()).hexdigest()
        self.revisions[sha] = dict(files)
        self.refs[ref] = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        return rev if rev in self.revisions else self.refs.get(rev)

    @staticmethod
    def is_lfs(path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def entry(self, path: str, data: bytes) -> dict:
        e = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
        if self.is_lfs(path):
            e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return e


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.cut_after: dict[str, int] = {}
        self.cut_always: dict[str, int] = {}  # every GET of the file cut after n body bytes
        self.slow: dict[str, float] = {}  # seconds between SLOW_PIECE-byte pieces of the body
        self.corrupt: set[str] = set()
        self.no_range: set[str] = set()  # files served whole (200) even when a Range is asked for
        self.requests: list[tuple[str, str, str | None]] = []
        self.auth: list[str | None] = []  # the Authorization header of every request
        self.images: dict[tuple[str, str], str] = {}  # (repository, tag) -> digest
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo: FakeRepo) -> FakeRepo:
        self.repos[(repo.repo_type, repo.repo_id)] = repo
        return repo

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-hub",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def gets(self, suffix: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith(suffix)]


_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/(.*))?$")
_REGISTRY = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _error(self, status: int, code: str, message: str = "") -> None:
            body = json.dumps({"error": message or code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message or code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _repo_rev(self, rtype: str, repo_id: str, rev: str) -> tuple[FakeRepo, str] | None:
            repo = hub.repos.get((rtype, repo_id))
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            sha = repo.resolve(unquote(rev))
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo, sha

        def _route(self, head: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            with hub.lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
                hub.auth.append(self.headers.get("Authorization"))
            if m := _API.match(parts.path):
                kind, repo_id, what, rev, sub = m.groups()
                found = self._repo_rev(kind[:-1], unquote(repo_id), rev)
                if found is None:
                    return
                repo, sha = found
                files = repo.revisions[sha]
                if what == "revision":
                    blobs = parse_qs(parts.query).get("blobs", ["false"])[0] == "true"
                    sibs = []
                    for p, data in sorted(files.items()):
                        s = {"rfilename": p}
                        if blobs:
                            e = repo.entry(p, data)
                            s.update(size=e["size"], blobId=e["oid"])
                            if "lfs" in e:
                                s["lfs"] = {"sha256": e["lfs"]["oid"], "size": e["lfs"]["size"],
                                            "pointerSize": 134}
                        sibs.append(s)
                    return self._json({"id": repo.repo_id, "sha": sha, "private": False, "siblings": sibs})
                prefix = (unquote(sub).rstrip("/") + "/") if sub else ""
                recursive = parse_qs(parts.query).get("recursive", ["false"])[0] in ("true", "True")
                out, dirs = [], set()
                for p, data in sorted(files.items()):
                    if not p.startswith(prefix):
                        continue
                    rest = p[len(prefix):]
                    if "/" in rest and not recursive:
                        dirs.add(prefix + rest.split("/")[0])
                        continue
                    if recursive:
                        bits = rest.split("/")[:-1]
                        for i in range(1, len(bits) + 1):
                            dirs.add(prefix + "/".join(bits[:i]))
                    out.append(repo.entry(p, data))
                out += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
                return self._json(out)
            if m := _REGISTRY.match(parts.path):
                digest = hub.images.get((m.group(1), m.group(2)))
                if digest is None:
                    return self._error(404, "MANIFEST_UNKNOWN")
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if m := _RESOLVE.match(parts.path):
                ds, repo_id, rev, fname = m.groups()
                found = self._repo_rev("dataset" if ds else "model", unquote(repo_id), rev)
                if found is None:
                    return
                repo, sha = found
                fname = unquote(fname)
                data = repo.revisions[sha].get(fname)
                if data is None:
                    return self._error(404, "EntryNotFound", f"{fname} not found")
                return self._send_file(repo, sha, fname, data, head)
            self._error(404, "NotFound", f"no route for {parts.path}")

        def _send_file(self, repo: FakeRepo, sha: str, fname: str, data: bytes, head: bool) -> None:
            key = f"{repo.repo_id}/{fname}"
            etag = hashlib.sha256(data).hexdigest() if repo.is_lfs(fname) else git_blob_oid(data)
            if key in hub.corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            rng = self.headers.get("Range")
            if rng and key not in hub.no_range and (r := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
                start = int(r.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", sha)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            with hub.lock:
                cut = hub.cut_after.pop(key, hub.cut_always.get(key))
                delay = hub.slow.get(key)
            if cut is not None and cut < len(body):
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if delay:
                try:
                    for i in range(0, len(body), SLOW_PIECE):
                        self.wfile.write(body[i:i + SLOW_PIECE])
                        self.wfile.flush()
                        time.sleep(delay)
                except OSError:  # the client went away
                    self.close_connection = True
                return
            self.wfile.write(body)

    return Handler
