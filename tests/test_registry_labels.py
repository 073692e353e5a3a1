"""Reading an image's labels from its registry (manifest -> config blob), and the docker backend's
image check built on it: a recipe image of this bundle runs, one of another bundle is refused with
the fix, a base is built on. Against a real registry (Debian's docker-registry, distribution 2.8)
started on 127.0.0.1 for this module; images are pushed to it through the registry API."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from runner.image import bundle_digest as bd
from runner.image import recipe_image as ri
from runner.image.registry import RegistryError, image_labels, parse_reference
from runner.launch.backends import docker as dk
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe

V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry not installed (apt-get install -y docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    (root / "config.yml").write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                     f"    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"registry did not start: {(root / 'registry.log').read_text()[-500:]}")
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)  # ours, by its own process group
    proc.wait(timeout=30)


def _put_blob(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def _put_manifest(host: str, repo: str, doc: dict, media_type: str, tag: str = "t") -> str:
    body = json.dumps(doc).encode()
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="PUT", data=body,
                                 headers={"Content-Type": media_type})
    urllib.request.urlopen(req).close()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(host: str, repo: str, labels: dict[str, str], arch: str = "amd64", tag: str = "t") -> str:
    """An image with these labels; returns REPO@sha256:<manifest digest>."""
    layer = _layer()
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Labels": labels},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": V2,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                           "digest": _put_blob(host, repo, config)},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                            "digest": _put_blob(host, repo, layer)}]}
    return f"{host}/{repo}@{_put_manifest(host, repo, manifest, V2, tag)}"


def push_index(host: str, repo: str, per_arch: dict[str, dict[str, str]]) -> str:
    manifests = []
    for arch, labels in per_arch.items():
        ref = push_image(host, repo, labels, arch, tag=f"single-{arch}")
        body = urllib.request.urlopen(urllib.request.Request(
            f"http://{host}/v2/{repo}/manifests/{ref.split('@')[1]}", headers={"Accept": V2})).read()
        manifests.append({"mediaType": V2, "size": len(body), "digest": ref.split("@")[1],
                          "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return f"{host}/{repo}@{_put_manifest(host, repo, index, OCI_INDEX, 'multi')}"


# ---- reading labels ----------------------------------------------------------------------------

def test_labels_come_from_the_config_blob(registry):
    ref = push_image(registry, "lab/single", {"org.opencontainers.image.title": "x", "k": "v"})
    assert image_labels(ref) == {"org.opencontainers.image.title": "x", "k": "v"}


def test_an_index_gives_this_platforms_labels(registry):
    ref = push_index(registry, "lab/multi", {"amd64": {"arch": "amd64"}, "arm64": {"arch": "arm64"}})
    assert image_labels(ref, machine="x86_64") == {"arch": "amd64"}
    assert image_labels(ref, machine="aarch64") == {"arch": "arm64"}
    with pytest.raises(RegistryError, match="no linux/riscv64 image"):
        image_labels(ref, machine="riscv64")


def test_an_unknown_digest_and_an_unreachable_registry_are_one_line_errors(registry):
    with pytest.raises(RegistryError, match="HTTP 404"):
        image_labels(f"{registry}/lab/single@sha256:{'0' * 64}")
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match="not reachable"):
        image_labels(f"127.0.0.1:{free_port()}/lab/single@sha256:{'0' * 64}")
    assert time.monotonic() - t0 < 10


def test_references_are_read_as_docker_reads_them():
    d = "sha256:" + "a" * 64
    r = parse_reference(f"radixark/miles:v0.1.0@{d}")
    assert (r.registry, r.repository, r.base_url) == ("docker.io", "radixark/miles",
                                                        "https://registry-1.docker.io/v2/radixark/miles")
    assert parse_reference(f"ubuntu@{d}").repository == "library/ubuntu"
    r = parse_reference(f"127.0.0.1:5055/a/b:tag@{d}")
    assert (r.registry, r.repository, r.base_url) == ("127.0.0.1:5055", "a/b", "http://127.0.0.1:5055/v2/a/b")
    with pytest.raises(RegistryError, match="not pinned by digest"):
        parse_reference("radixark/miles:v0.1.0")


class _TokenFront(http.server.BaseHTTPRequestHandler):
    """A registry front that demands an anonymous Bearer token (as Docker Hub does) and passes
    authorised requests on to the real registry behind it."""
    upstream = ""
    token = "tok-123"
    seen: list[str] = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            self.seen.append(self.path)
            body = json.dumps({"token": self.token}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",'
                             f'service="front",scope="repository:lab/single:pull"')
            self.end_headers()
            return
        req = urllib.request.Request(f"http://{self.upstream}{self.path}", headers={"Accept": self.headers["Accept"]}
                                     if self.headers.get("Accept") else {})
        with urllib.request.urlopen(req) as r:
            body = r.read()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)


def test_the_bearer_token_challenge_is_followed_anonymously(registry):
    ref = push_image(registry, "lab/single", {"via": "token"})
    _TokenFront.upstream = registry
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenFront)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        front = f"127.0.0.1:{server.server_address[1]}"
        assert image_labels(front + ref[len(registry):]) == {"via": "token"}
        assert _TokenFront.seen == ["/token?service=front&scope=repository%3Alab%2Fsingle%3Apull"]
    finally:
        server.shutdown()


# ---- the docker backend's image check, through the registry -------------------------------------

@pytest.fixture
def no_local_engine(tmp_path, monkeypatch):
    """No docker CLI here: the check must read the labels from the registry."""
    monkeypatch.setenv("RECIPE_DOCKER", str(tmp_path / "no-docker"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    return lambda: build_launch(RunOptions.resolve(load_recipe("nemotron3_nano_tiny"),
                                                   {"inputs_dir": inputs, "output_dir": tmp_path / "out"},
                                                   from_env=True),
                                run_id="r-1", run_dir=tmp_path / "run", backend="docker")


def recipe_labels(bundle: str, revision: str = "f" * 40, base: str = "reg/miles@sha256:" + "b" * 64) -> dict:
    return {ri.L_TITLE: ri.TITLE, ri.L_BUNDLE: bundle, ri.L_REVISION: revision, ri.L_BASE: base,
            ri.L_BASE_DIGEST: base.split("@")[1]}


def test_a_recipe_image_of_this_bundle_in_the_registry_passes(registry, no_local_engine, monkeypatch):
    ref = push_image(registry, "lab/this", recipe_labels(ri.bundle_digest(ROOT)))
    monkeypatch.setenv("RECIPE_IMAGE", ref)
    c = dk.check_image(no_local_engine())
    assert c.status == "ok" and "recipe image of this bundle" in c.detail and "in its registry" in c.detail
    assert dk.command(no_local_engine())[-3] == ref  # runs as given, then `exec RUN_DIR`


def test_a_recipe_image_of_another_bundle_is_refused_with_the_fix(registry, no_local_engine, monkeypatch):
    ref = push_image(registry, "lab/other", recipe_labels("sha256:" + "9" * 64, revision="abc123"))
    monkeypatch.setenv("RECIPE_IMAGE", ref)
    c = dk.check_image(no_local_engine())
    assert c.status == "fail" and "recipe image of another bundle (revision abc123" in c.detail
    assert ri.bundle_digest(ROOT) in c.detail
    assert "reg/miles@sha256:" + "b" * 64 in c.fix and "checkout of abc123" in c.fix


def test_a_base_in_the_registry_is_built_on(registry, no_local_engine, monkeypatch):
    ref = push_image(registry, "lab/base", {"maintainer": "someone"})
    monkeypatch.setenv("RECIPE_IMAGE", ref)
    lc = no_local_engine()
    c = dk.check_image(lc)
    tag = ri.auto_tag(ri.bundle_digest(ROOT), ref)
    assert c.status == "ok" and "a base image (no recipe runner)" in c.detail and f"builds {tag}" in c.detail
    build, run = dk.commands(lc)  # after preflight: what runs is what it found
    assert build[-3:] == ["build", tag, ref] and tag in run


def test_a_digest_the_registry_lacks_fails_naming_it(registry, no_local_engine, monkeypatch):
    monkeypatch.setenv("RECIPE_IMAGE", f"{registry}/lab/absent@sha256:{'0' * 64}")
    c = dk.check_image(no_local_engine())
    assert c.status == "fail" and "neither on this engine nor readable from its registry" in c.detail
    assert "HTTP 404" in c.detail and "docker login" in c.fix


def test_bundle_digest_follows_content_not_time(tmp_path):
    root = tmp_path / "b"
    for rel in ("runner/a.py", "recipes/r/run.sh", "docker/image.lock", "pyproject.toml", "docker/Dockerfile",
                "docker/requirements.lock", "docker/recipe-entrypoint.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "runner" / "__pycache__").mkdir()
    (root / "runner" / "__pycache__" / "a.cpython-311.pyc").write_text("cache")
    d0 = ri.bundle_digest(root)  # not a git checkout: every file but caches
    os.utime(root / "runner" / "a.py", (1, 1))
    (root / "runner" / "__pycache__" / "a.cpython-311.pyc").write_text("other cache")
    assert ri.bundle_digest(root) == d0
    (root / "recipes" / "r" / "run.sh").chmod(0o755)
    d1 = ri.bundle_digest(root)
    assert d1 != d0
    (root / "recipes" / "r" / "run.sh").write_text("changed")
    assert ri.bundle_digest(root) not in (d0, d1)
    assert ri.auto_tag(d0, "x@sha256:" + "1" * 64) != ri.auto_tag(d0, "x@sha256:" + "2" * 64)


def test_the_checkout_digest_is_what_image_sh_stamps(tmp_path):
    """image.sh computes BUNDLE_DIGEST over the context it assembled; the runner over the checkout."""
    ctx = tmp_path / "ctx"
    (ctx / "bundle").mkdir(parents=True)
    files = bd.checkout_files(ROOT)
    for rel, src in files.items():
        name = next((n for n, p in bd.DOCKER_FILES.items() if p == rel), None)
        dst = ctx / name if name and rel != "docker/image.lock" else ctx / "bundle" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    out = subprocess.run(["python3", str(ROOT / "runner" / "image" / "bundle_digest.py"), "context", str(ctx)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == ri.bundle_digest(ROOT)
    assert Path(ROOT / "docker" / "image.sh").read_text().count("bundle_digest.py\" context") == 1
