"""Container image references, parsed in one place: `[REGISTRY/]REPO[:TAG][@sha256:HEX]`.

Docker's reference grammar (distribution/reference): the first path component is a registry when
it holds a '.' or a ':' or is `localhost`; a tag follows the last ':' after the last '/'; a digest
follows '@'. recipe.toml pins images this way, and docker, enroot/pyxis and `recipe lock` all read
them through parse_image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import UsageError

DOCKER_HUB = "docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "" for Docker Hub
    repository: str  # e.g. radixark/miles
    tag: str  # "" if none
    digest: str  # "sha256:<64 hex>" or ""

    @property
    def digest_hex(self) -> str:
        return self.digest.split(":", 1)[1] if self.digest else ""

    @property
    def pinned(self) -> bool:
        return bool(self.digest)

    def hub_path(self) -> tuple[str, str, str]:
        """(registry, repository, tag) as a registry's API names them: docker.io, library/NAME, latest."""
        registry = self.registry or DOCKER_HUB
        repo = f"library/{self.repository}" if registry == DOCKER_HUB and "/" not in self.repository \
            else self.repository
        return registry, repo, self.tag or "latest"


def parse_image(reference: str) -> ImageRef:
    """Split a reference; a usage error naming it when it is none, holds spaces or a malformed digest."""
    ref = reference.strip()
    if not ref or any(c.isspace() for c in ref) or ref == "none":
        raise UsageError(f"image reference {reference!r} is not an image (expected REPO[:TAG]@sha256:DIGEST)")
    name, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        raise UsageError(f"image reference {reference!r}: digest must be sha256: followed by 64 hex digits")
    first, sep, rest = name.partition("/")
    registry = ""
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    repo, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repo, _, tag = name.rpartition(":")
    if not repo:
        raise UsageError(f"image reference {reference!r} has no repository")
    return ImageRef(registry=registry, repository=repo, tag=tag, digest=digest)


def is_pinned(reference: str) -> bool:
    """True for a well-formed reference with a sha256 digest; False for anything else (never raises)."""
    try:
        return parse_image(reference).pinned
    except UsageError:
        return False
