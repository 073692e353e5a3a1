"""The commit a source tree is at, read from its .git without the git binary.

Images often ship a checkout but not git (or a git too old for the repository format). HEAD is
either a commit or `ref: refs/heads/<branch>`; the ref is a loose file or a line of packed-refs.
A `.git` file (worktrees, submodules) points at the real git directory.
"""

from __future__ import annotations

import re
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class GitReadError(Exception):
    pass


def git_dir(tree: Path) -> Path:
    dot = tree / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():
        text = dot.read_text().strip()
        if text.startswith("gitdir:"):
            target = Path(text[len("gitdir:"):].strip())
            return target if target.is_absolute() else (tree / target).resolve()
        raise GitReadError(f"{dot}: not a 'gitdir:' file")
    raise GitReadError(f"{tree}: no .git")


def resolve_ref(gdir: Path, ref: str) -> str:
    loose = gdir / ref
    if loose.is_file():
        return loose.read_text().strip()
    # A worktree's refs live in the common dir.
    common = gdir / "commondir"
    roots = [gdir] + ([(gdir / common.read_text().strip()).resolve()] if common.is_file() else [])
    for root in roots:
        if (root / ref).is_file():
            return (root / ref).read_text().strip()
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and not line.startswith(("#", "^")):
                    return parts[0]
    raise GitReadError(f"{gdir}: ref {ref} not found (loose or packed)")


def head_commit(tree: Path) -> str:
    """The commit `tree` has checked out; raises GitReadError with the reason otherwise."""
    gdir = git_dir(tree)
    try:
        head = (gdir / "HEAD").read_text().strip()
    except OSError as e:
        raise GitReadError(f"{gdir}/HEAD: {e.strerror}") from None
    for _ in range(5):  # symbolic refs may chain
        if not head.startswith("ref:"):
            break
        head = resolve_ref(gdir, head[len("ref:"):].strip())
    if not _SHA.match(head):
        raise GitReadError(f"{gdir}: HEAD resolves to {head!r}, not a commit id")
    return head
