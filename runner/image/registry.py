"""Read an image's labels from its registry, without pulling it: manifest, then the config blob.

`NAME@sha256:...` -> the registry's manifest at that digest (an index picks this host's platform)
-> the config blob -> config.Labels. Registries on 127.0.0.1/localhost are spoken to over plain
HTTP (the tests' registry, `docker/image.sh push`); others over HTTPS, anonymously, following the
Bearer token challenge (Docker Hub and most registries serve public images that way). Every
request is bounded by a timeout; an image that needs credentials is reported as such.
"""

from __future__ import annotations

import json
import platform
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

TIMEOUT_S = 15
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"])
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class RegistryError(Exception):
    """One line: why the labels could not be read."""


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    digest: str  # sha256:...

    @property
    def base_url(self) -> str:
        host = self.registry.split(":")[0]
        scheme = "http" if host in ("127.0.0.1", "localhost") else "https"
        api = "registry-1.docker.io" if self.registry == "docker.io" else self.registry
        return f"{scheme}://{api}/v2/{self.repository}"


def parse_reference(ref: str) -> Reference:
    """NAME[:TAG]@sha256:HEX, as docker reads it (docker.io and library/ by default)."""
    name, sep, digest = ref.partition("@")
    if not sep or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise RegistryError(f"'{ref}' is not pinned by digest (NAME@sha256:<64 hex>)")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    path = re.sub(r":[^/]*$", "", path)  # a tag beside the digest is ignored, as docker does
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return Reference(registry, path, digest)


def _challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header or ""))


class Client:
    def __init__(self, ref: Reference, timeout: float = TIMEOUT_S):
        self.ref, self.timeout, self.token = ref, timeout, None

    def _open(self, url: str, accept: str | None = None):
        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        if self.token:
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")  # not to a blob CDN
        return urllib.request.urlopen(req, timeout=self.timeout)

    def _login(self, header: str) -> None:
        c = _challenge(header)
        if "realm" not in c:
            raise RegistryError(f"{self.ref.registry} asks for credentials ({header or 'no challenge'})")
        query = urllib.parse.urlencode({k: v for k, v in c.items() if k in ("service", "scope")} or
                                       {"scope": f"repository:{self.ref.repository}:pull"})
        try:
            with urllib.request.urlopen(f"{c['realm']}?{query}", timeout=self.timeout) as r:
                doc = json.load(r)
        except (OSError, ValueError) as e:
            raise RegistryError(f"no anonymous token from {c['realm']}: {e}") from None
        self.token = doc.get("token") or doc.get("access_token")

    def get_json(self, path: str, accept: str | None = None) -> dict:
        url = f"{self.ref.base_url}/{path}"
        for attempt in (0, 1):
            try:
                with self._open(url, accept) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0 and self.token is None:
                    self._login(e.headers.get("WWW-Authenticate", ""))
                    continue
                if e.code in (401, 403):
                    raise RegistryError(f"{self.ref.registry}/{self.ref.repository} needs credentials "
                                        f"(HTTP {e.code}): docker login {self.ref.registry}") from None
                if e.code == 404:
                    raise RegistryError(f"{self.ref.registry}/{self.ref.repository} has no {path.split('/')[-1]} "
                                        "(HTTP 404)") from None
                raise RegistryError(f"{url}: HTTP {e.code}") from None
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise RegistryError(f"{self.ref.registry} not reachable: {reason}") from None
            except ValueError as e:
                raise RegistryError(f"{url}: not JSON ({e})") from None
        raise RegistryError(f"{url}: unauthorized after login")


def pick_platform(index: dict, machine: str | None = None) -> str:
    arch = ARCH.get((machine or platform.machine()).lower(), (machine or platform.machine()).lower())
    for m in index.get("manifests", []):
        p = m.get("platform", {})
        if p.get("os") == "linux" and p.get("architecture") == arch:
            return m["digest"]
    have = ", ".join(f"{m.get('platform', {}).get('os')}/{m.get('platform', {}).get('architecture')}"
                     for m in index.get("manifests", []))
    raise RegistryError(f"the image index has no linux/{arch} image (it has {have or 'none'})")


def image_labels(ref: str, timeout: float = TIMEOUT_S, machine: str | None = None) -> dict[str, str]:
    """The labels of the image REF names (for this host's platform)."""
    r = parse_reference(ref)
    client = Client(r, timeout)
    manifest = client.get_json(f"manifests/{r.digest}", MANIFEST_TYPES)
    if "manifests" in manifest:  # an index: this platform's image
        manifest = client.get_json(f"manifests/{pick_platform(manifest, machine)}", MANIFEST_TYPES)
    config = (manifest.get("config") or {}).get("digest")
    if not config:
        raise RegistryError(f"{ref}: the manifest names no config blob")
    blob = client.get_json(f"blobs/{config}")
    return dict((blob.get("config") or {}).get("Labels") or {})
