"""Pin an image's build metadata in a registry so that its digest depends on content only.

    python docker/pin_config.py HOST/REPO:TAG EPOCH      prints HOST/REPO@sha256:<digest>

Two builds of the same inputs add byte-identical layers (docker/Dockerfile pins every timestamp),
but the classic builder writes the build time and its throwaway container and parent-image ids
into the image config, so the image digest still differs. This rewrites the config in place in
the registry: `created` and every history entry's time become EPOCH (SOURCE_DATE_EPOCH), the
builder's `container`, `container_config` and `config.Image` are dropped; layers are untouched. The
result's digest is the same for every build of the same inputs.

Speaks the registry HTTP API v2 over plain http to a registry without authentication (the local
registry on 127.0.0.1). To publish elsewhere, copy the pinned image digest-preserving:
`skopeo copy docker://127.0.0.1:PORT/REPO@sha256:... docker://REGISTRY/REPO:TAG`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.request
from datetime import UTC, datetime

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=60)  # noqa: S310 - a registry URL we were given


def split(ref: str) -> tuple[str, str, str]:
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not host or not repo or not tag or "@" in ref:
        raise SystemExit(f"pin_config: expected HOST/REPO:TAG, got {ref!r}")
    return host, repo, tag


def pinned_config(config: dict, epoch: int) -> dict:
    stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = dict(config)
    out["created"] = stamp
    out["history"] = [{**h, "created": stamp} for h in config.get("history", [])]
    for key in ("container", "container_config"):
        out.pop(key, None)
    out["config"] = {k: v for k, v in config.get("config", {}).items() if k != "Image"}
    return out


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    host, repo, tag = split(argv[0])
    base = f"http://{host}/v2/{repo}"
    manifest = json.load(request("GET", f"{base}/manifests/{tag}", headers={"Accept": MANIFEST}))
    if manifest.get("mediaType") != MANIFEST:
        raise SystemExit(f"pin_config: {argv[0]} is not a single-platform schema 2 manifest")
    config = json.load(request("GET", f"{base}/blobs/{manifest['config']['digest']}"))
    blob = canonical(pinned_config(config, int(argv[1])))
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    upload = request("POST", f"{base}/blobs/uploads/").headers["Location"]
    upload = upload if upload.startswith("http") else f"http://{host}{upload}"
    sep = "&" if "?" in upload else "?"
    request("PUT", f"{upload}{sep}digest={digest}", blob, {"Content-Type": "application/octet-stream"})
    manifest["config"] = {"mediaType": CONFIG, "size": len(blob), "digest": digest}
    body = canonical(manifest)
    request("PUT", f"{base}/manifests/{tag}", body, {"Content-Type": MANIFEST})
    print(f"{host}/{repo}@sha256:{hashlib.sha256(body).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
