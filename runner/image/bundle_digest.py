"""The bundle's content digest: what a recipe image of this bundle is built from, keyed by content.

The recipe image adds exactly the bundle (runner, recipes, docker/image.lock, pyproject.toml), the
Dockerfile, the runner's hash-locked requirements and the entry point to its base. Their digest,
with the base's digest, names the image (`recipe run` builds it once, then reuses it) and is stamped
into it as the label io.recipe-bundle.bundle.digest. Two places compute it and must agree:

    python3 runner/image/bundle_digest.py checkout ROOT    this checkout (what `recipe run` would build)
    python3 runner/image/bundle_digest.py context CTX      a build context made by `docker/image.sh context`

The digest is sha256 over sorted lines "<sha256 of content> <x|-> <path>" (x: executable), so it
does not depend on timestamps, owners or where the files lie. The wheels are not in it: the
requirements lock pins each by hash. Standard library only: image.sh runs this file directly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

BUNDLE_PATHS = ("runner", "recipes", "docker/image.lock", "pyproject.toml")
# context file name -> its path in the checkout
DOCKER_FILES = {"Dockerfile": "docker/Dockerfile", "requirements.lock": "docker/requirements.lock",
                "recipe-entrypoint.py": "docker/recipe-entrypoint.py"}
SKIP_PARTS = ("__pycache__",)


def _line(path: str, f: Path) -> str:
    h = hashlib.sha256(f.read_bytes()).hexdigest()
    return f"{h} {'x' if f.stat().st_mode & 0o111 else '-'} {path}"


def digest(files: dict[str, Path]) -> str:
    body = "".join(_line(p, files[p]) + "\n" for p in sorted(files))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def _walk(root: Path, rel: str) -> list[str]:
    base = root / rel
    if base.is_file():
        return [rel]
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in SKIP_PARTS]
        for name in filenames:
            if not name.endswith(".pyc"):
                out.append(str(Path(dirpath, name).relative_to(root)))
    return out


def checkout_files(root: Path) -> dict[str, Path]:
    """The files image.sh would copy from this checkout: tracked and new (not ignored) ones under
    BUNDLE_PATHS, as `git ls-files` lists them; without git, every file there but caches."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                              "--", *BUNDLE_PATHS], capture_output=True, check=True, timeout=60).stdout
        rels = [r for r in out.decode().split("\0") if r]
    except (OSError, subprocess.SubprocessError):
        rels = [r for p in BUNDLE_PATHS if (root / p).exists() for r in _walk(root, p)]
    files = {r: root / r for r in rels if (root / r).is_file()}
    files.update({path: root / path for path in DOCKER_FILES.values()})
    return files


def context_files(ctx: Path) -> dict[str, Path]:
    """The same files inside a build context: bundle/<path> and the docker files at its top."""
    bundle = ctx / "bundle"
    files = {r: bundle / r for p in BUNDLE_PATHS if (bundle / p).exists() for r in _walk(bundle, p)}
    files.update({path: ctx / name for name, path in DOCKER_FILES.items()})
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("checkout", "context"):
        print("usage: bundle_digest.py checkout ROOT | context CTX", file=sys.stderr)
        return 2
    root = Path(argv[1])
    print(digest(checkout_files(root) if argv[0] == "checkout" else context_files(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
