"""What `recipe fetch` learned about files the manifest pins by revision only (no sha256 yet).

Such a file (see manifest.py: a `# git-blob:` line and no checksum line) is downloaded at the
pinned commit and its git blob id, sha1(b"blob <size>\\0" + content), is checked against the one
the manifest records or, where the manifest says `unknown`, the one the Hub names for that path at
that commit. Its sha256 is then recorded here, in `<inputs root>/.recipe-fetch/pinned.json`:

    {"model/configuration_x.py": {"repo": ..., "revision": ..., "size": 12893,
                                           "git_blob": "<40 hex>", "sha256": "<64 hex>"}}

This record is not a pin: the blob id it was checked against may come from the same server that
sent the file, so `recipe verify` and the run refuse a file the manifest holds no hash of. It
lets `recipe lock NAME --trust-fetched` pin, offline and on purpose, exactly the bytes that were
fetched at the pinned revision (after the user has read them).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from runner.atomicfile import write_text_atomic
from runner.errors import EXIT_CORRUPT, EXIT_MISSING, RecipeError
from runner.inputs import manifest as mf

STAGING_DIR = ".recipe-fetch"  # `recipe fetch` stages partial downloads here; never an "extra" file
RECORD = "pinned.json"
_HEX40, _HEX64 = re.compile(r"[0-9a-f]{40}"), re.compile(r"[0-9a-f]{64}")


def record_path(root: Path) -> Path:
    return Path(root) / STAGING_DIR / RECORD


def revision_for(m: mf.Manifest, rel: str) -> tuple[str | None, str | None]:
    """(repo, revision) the manifest header pins for the directory `rel` lies in."""
    for kind in ("model", "data"):
        d = m.header.get(f"{kind}.dir")
        if d and rel.startswith(d.rstrip("/") + "/"):
            return m.header.get(f"{kind}.repo"), m.header.get(f"{kind}.revision")
    return None, None


def load(root: Path) -> dict[str, dict]:
    """The records, each checked field by field; a malformed one is dropped (the file is then
    simply unverified, never trusted on a bad record)."""
    try:
        doc = json.loads(record_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    out = {}
    for rel, r in doc.items():
        if (isinstance(r, dict) and isinstance(r.get("size"), int) and isinstance(r.get("revision"), str)
                and isinstance(r.get("git_blob"), str) and _HEX40.fullmatch(r["git_blob"])
                and isinstance(r.get("sha256"), str) and _HEX64.fullmatch(r["sha256"])):
            out[rel] = r
    return out


def matching_record(e: mf.Entry, revision: str | None, records: dict[str, dict]) -> dict | None:
    """fetch's record of a pinned-only entry, if it is for this revision and size (and the entry's
    blob id, when the manifest knows it); else None."""
    r = records.get(e.path)
    if not r or r["revision"] != revision or r["size"] != e.size:
        return None
    if e.git_blob not in (None, mf.UNKNOWN) and e.git_blob != r["git_blob"]:
        return None
    return r


class Recorder:
    """Adds records during a fetch (threads), writing the file atomically after each."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.data = load(self.root)
        self.lock = threading.Lock()

    def add(self, rel: str, repo: str, revision: str, size: int, git_blob: str, sha256: str) -> None:
        with self.lock:
            self.data[rel] = {"repo": repo, "revision": revision, "size": size, "git_blob": git_blob,
                              "sha256": sha256}
            write_text_atomic(record_path(self.root), json.dumps(self.data, indent=1, sort_keys=True) + "\n")


def pin_fetched(m: mf.Manifest, root: Path) -> tuple[mf.Manifest, list[tuple[mf.Entry, dict]]]:
    """The manifest with each unpinned entry's (git-blob: unknown) sha256 and git blob id taken from
    fetch's record at the pinned revision, the file on disk checked to still be those bytes; and (entry, record)
    for each one pinned. Raises before anything is written if any cannot be pinned."""
    from runner.inputs.verify import hash_stable  # verify imports this module

    records, entries, pinned = load(root), [], []
    for e in m.entries:
        if not (e.pinned_only and e.git_blob == mf.UNKNOWN):
            entries.append(e)
            continue
        rev = revision_for(m, e.path)[1]
        r = matching_record(e, rev, records)
        if r is None:
            raise RecipeError(f"{e.path}: no `recipe fetch` under {root} downloaded it at {rev}; fetch it, "
                              f"read it, then pin it", EXIT_MISSING)
        try:
            got = hash_stable(mf.resolve_inside(root, e.path)).sha256
        except FileNotFoundError:
            raise RecipeError(f"{root / e.path}: missing; fetch it again, read it, then pin it", EXIT_MISSING) from None
        except OSError as err:
            raise RecipeError(f"{root / e.path}: cannot hash it ({err.strerror or err}); nothing pinned",
                              EXIT_CORRUPT) from None
        if got != r["sha256"]:
            raise RecipeError(f"{root / e.path}: sha256 {got} is not that of the bytes `recipe fetch` downloaded "
                              f"({r['sha256']}); nothing pinned: fetch it again and read it", EXIT_CORRUPT)
        new = mf.Entry(e.path, r["sha256"], e.size, r["git_blob"])
        entries.append(new)
        pinned.append((new, r))
    return mf.Manifest(m.header, entries, m.comments), pinned


def trust_warning(recipe: str, e: mf.Entry, source: str) -> str:
    """The one line said whenever a hash nothing independent vouches for becomes a pin."""
    what = "execute this code (trust_remote_code)" if e.path.endswith(".py") else "load this file"
    return (f"warning: {e.path}: pinning sha256 {e.sha256}, the bytes {source}, checked only against the "
            f"git blob id that same server gave; every run of {recipe} will {what} as is: pin only what you "
            f"have read or whose server you trust")
