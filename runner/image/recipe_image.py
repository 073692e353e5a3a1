"""The recipe image of this bundle on a given base: recognised by its labels, built once, reused.

A recipe pins the miles *base* image; it has no `recipe` entry point. The docker backend therefore
runs the recipe image: docker/Dockerfile on that base by digest, holding this bundle. Its local tag
is keyed by content, `recipe-bundle-auto:<key>` with key = sha256(bundle digest, base digest), so
the same checkout on the same base finds it again (reuse), and a changed file or base builds anew.

Any image's labels say what it is (read locally, else from its registry's config blob):
- a recipe image of this bundle: io.recipe-bundle.bundle.digest equals this checkout's digest;
- a recipe image of another bundle: the title is recipe-bundle, the digest differs (or is absent);
- anything else is a base to build on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runner.image import bundle_digest as bd
from runner.image.registry import RegistryError, image_labels

TITLE = "recipe-bundle"
L_TITLE = "org.opencontainers.image.title"
L_BUNDLE = "io.recipe-bundle.bundle.digest"
L_REVISION = "org.opencontainers.image.revision"
L_BASE = "org.opencontainers.image.base.name"
L_BASE_DIGEST = "org.opencontainers.image.base.digest"
AUTO_REPO = "recipe-bundle-auto"
THIS, OTHER, BASE = "recipe image of this bundle", "recipe image of another bundle", "base"


@dataclass
class ImageFacts:
    ref: str
    where: str  # "local" | "registry"
    labels: dict[str, str] = field(default_factory=dict)
    image_id: str | None = None  # local images only


def bundle_digest(root: Path) -> str:
    return bd.digest(bd.checkout_files(root))


def kind(labels: dict[str, str], bundle: str) -> str:
    if labels.get(L_TITLE) != TITLE:
        return BASE
    return THIS if labels.get(L_BUNDLE) == bundle else OTHER


def base_digest(ref: str) -> str:
    return ref.rsplit("@", 1)[1] if "@" in ref else "unknown"


def auto_tag(bundle: str, base_ref: str) -> str:
    key = hashlib.sha256(f"{bundle}\n{base_digest(base_ref)}\n".encode()).hexdigest()[:20]
    return f"{AUTO_REPO}:{key}"


def inspect_local(docker: str, ref: str) -> ImageFacts | None:
    try:
        p = subprocess.run([docker, "image", "inspect", "--format", "{{json .}}", ref], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    doc = json.loads(p.stdout or "{}")
    return ImageFacts(ref, "local", dict((doc.get("Config") or {}).get("Labels") or {}), doc.get("Id"))


def lookup(docker: str, ref: str) -> ImageFacts:
    """This engine's copy if it has one, else the registry's labels (RegistryError if neither)."""
    local = inspect_local(docker, ref)
    if local is not None:
        return local
    return ImageFacts(ref, "registry", image_labels(ref))


def find_built(docker: str, bundle: str, base_ref: str) -> ImageFacts | None:
    """The recipe image built earlier for this bundle content on this base, if this engine has it."""
    facts = inspect_local(docker, auto_tag(bundle, base_ref))
    if facts and kind(facts.labels, bundle) == THIS and facts.labels.get(L_BASE_DIGEST) == base_digest(base_ref):
        return facts
    return None


def can_build(root: Path) -> str | None:
    """Why this checkout cannot build the recipe image, or None."""
    if not (root / "docker" / "image.sh").is_file():
        return f"{root} has no docker/image.sh (not a bundle checkout)"
    if not (root / ".git").exists():
        return f"{root} is not a git checkout (docker/image.sh builds from the tracked files)"
    return None


def build(docker: str, root: Path, bundle: str, base_ref: str, log: Path) -> ImageFacts:
    """docker/image.sh build on base_ref (the build pulls it if this engine lacks it); a failed build
    raises RuntimeError naming the log's last line."""
    tag = auto_tag(bundle, base_ref)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER": docker, "PYTHON": sys.executable}
    with open(log, "w") as f:
        p = subprocess.run(["bash", str(root / "docker" / "image.sh"), "build", tag, base_ref], stdout=subprocess.PIPE,
                           stderr=f, text=True, env=env, check=False)
    if p.returncode != 0:
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"docker/image.sh build exited {p.returncode}: {last} (log: {log})")
    facts = inspect_local(docker, tag)
    if facts is None or kind(facts.labels, bundle) != THIS:
        got = facts.labels.get(L_BUNDLE) if facts else "no image"
        raise RuntimeError(f"the image built as {tag} is not this bundle's (bundle digest {got}, want {bundle}): "
                           "did the checkout change during the build?")
    return facts


def running_image() -> dict | None:
    """Inside a recipe image: what it was built from (its build.json) and, when the docker backend
    started it, the recipe image's tag and id. None outside a recipe image."""
    from runner.paths import bundle_root

    info = bundle_root() / "build.json"
    if not info.is_file():
        return None
    try:
        built = json.loads(info.read_text())
    except (OSError, ValueError) as e:
        built = {"error": f"{info}: {e}"}
    return {**built, "recipe_image": os.environ.get("RECIPE_IMAGE_REF"),
            "recipe_image_id": os.environ.get("RECIPE_IMAGE_ID")}


__all__ = ["RegistryError", "ImageFacts", "bundle_digest", "kind", "auto_tag", "lookup", "find_built", "build",
           "can_build", "THIS", "OTHER", "BASE"]
