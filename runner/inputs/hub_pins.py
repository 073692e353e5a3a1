"""`recipe lock`: rebuild a recipe's inputs manifest from the Hub's metadata, without the weights.

LFS files carry their sha256 and size in the Hub's tree listing; the few small non-LFS files
(config.json, chat_template.jinja, configuration_*.py, ...) have only a git blob id (sha1) there,
so they are downloaded, checked against that blob id and hashed (capped at SMALL_FILE_MAX); the
manifest records both. A larger non-LFS file is pinned by its blob id and size alone (no sha256
yet; `recipe fetch` checks and records it). A file the repo holds at the revision that the
manifest leaves out is a finding. The image tag is resolved to a digest where a registry answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import EXIT_FAIL, RecipeError, UsageError
from runner.inputs import manifest as mf
from runner.inputs.fetch import SMALL_FILE_MAX, Source, check_revision, file_url
from runner.inputs.hub_client import bounded_session, failure_code, hub_errors, hub_token, timeout_s
from runner.inputs.hub_client import one_line as _one_line
from runner.recipe import Recipe

NOT_IN_MANIFEST = (".gitattributes",)


def manifest_header(recipe: Recipe) -> tuple[list[str], dict[str, str]]:
    """(free comment lines, header fields) for the recipe's inputs manifest."""
    model, data = recipe.model, recipe.dataset
    comments = [
        f"recipe-bundle inputs manifest of recipe {recipe.name} (sha256sum -c --strict format).",
        f"Check: cd <inputs root> && sha256sum -c --strict {recipe.files['manifest']}"
        f"   (or: recipe verify {recipe.name})",
        f"Regenerate from the Hub's metadata: recipe lock {recipe.name}",
    ]
    header = {"recipe": recipe.name}
    if model.repo:
        header.update({"model.repo": model.repo, "model.revision": model.revision, "model.dir": model.dir})
    if data.repo:
        header.update({"data.repo": data.repo, "data.repo_type": data.repo_type, "data.revision": data.revision,
                       "data.dir": data.dir})
    header["image"] = recipe.image
    own = f"{recipe.framework}_commit"  # the trainer's own pin in [pins], when recipe.toml states one
    if recipe.commits.get(own):
        header[own] = recipe.commits[own]
    return comments, header


PIN_KEYS = ("model.repo", "model.revision", "model.dir", "data.repo", "data.revision", "data.dir")


def check_pins(recipe: Recipe, m: mf.Manifest, where: str, require: bool = False) -> None:
    """Refuse a manifest whose header names other repos/revisions than recipe.toml (a pin edited
    without `recipe lock`). Keys the header lacks are skipped unless `require`."""
    _, expected = manifest_header(recipe)
    for key in PIN_KEYS:
        if key not in m.header and not require:
            continue
        if m.header.get(key) != expected.get(key):
            raise UsageError(f"{where}: header '{key}' is {m.header.get(key)!r} but recipe.toml says "
                             f"{expected.get(key)!r}; run `recipe lock {recipe.name}`")


def recipe_sources(recipe: Recipe) -> list[Source]:
    _, h = manifest_header(recipe)
    return [Source(h[f"{k}.dir"], h[f"{k}.repo"], h.get(f"{k}.repo_type", "model"), h[f"{k}.revision"])
            for k in ("model", "data") if f"{k}.repo" in h]


@dataclass(frozen=True)
class TreeFile:
    size: int
    sha256: str | None  # the LFS sha256; None for a file stored in git itself
    git_blob: str  # git blob id: of the content for a non-LFS file, of the LFS pointer otherwise


def repo_tree(src: Source, endpoint: str | None = None) -> dict[str, TreeFile]:
    """Every file of the repo at src.revision, from the Hub's tree listing (HfApi.list_repo_tree)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    bounded_session()
    api = HfApi(endpoint=endpoint, token=hub_token())
    out = {}
    for item in api.list_repo_tree(src.repo_id, repo_type=src.repo_type, revision=src.revision,
                                   recursive=True):
        if isinstance(item, RepoFile):
            if item.lfs:
                out[item.path] = TreeFile(item.lfs.size, item.lfs.sha256, item.blob_id)
            else:
                out[item.path] = TreeFile(item.size, None, item.blob_id)
    return out


def hash_small_file(src: Source, name: str, size: int, endpoint: str | None = None,
                    git_blob: str | None = None) -> str:
    """sha256 of a non-LFS file, downloaded whole; its git blob id must be `git_blob` (the tree's)."""
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    if size > SMALL_FILE_MAX:
        raise RecipeError(f"{src.repo_id}/{name}: {size} bytes and not LFS: refusing to download it to "
                          f"hash it (limit {SMALL_FILE_MAX})", EXIT_FAIL)
    headers = build_hf_headers(token=hub_token())
    headers["Accept-Encoding"] = "identity"
    try:
        r = bounded_session().get(file_url(src, name, endpoint), headers=headers, follow_redirects=True,
                                  timeout=timeout_s())
        hf_raise_for_status(r)
    except hub_errors() as e:
        raise RecipeError(f"{src.repo_id}/{name}: cannot download it to hash it: {_one_line(e)}",
                          failure_code(e)) from None
    if len(r.content) != size:
        raise RecipeError(f"{src.repo_id}/{name}: Hub listed {size} bytes but served {len(r.content)}",
                          EXIT_FAIL)
    served_blob = hashlib.sha1(mf.git_blob_header(size) + r.content).hexdigest()
    if git_blob is not None and served_blob != git_blob:
        raise RecipeError(f"{src.repo_id}/{name}: the Hub lists git blob {git_blob} at {src.revision} but served "
                          f"content whose blob id is {served_blob}", EXIT_FAIL)
    return hashlib.sha256(r.content).hexdigest()


def build_manifest(recipe: Recipe, old: mf.Manifest | None, *, endpoint: str | None = None,
                   all_files: bool = False, log: Callable[[str], None] = lambda s: None,
                   findings: list[str] | None = None) -> mf.Manifest:
    """The manifest the Hub's metadata implies. Model files: those the old manifest lists (so a
    hand-picked set stays picked), or every file of the repo when there is no old manifest or
    `all_files`. Data: the old manifest's data files, else recipe.toml [data].file. Each model
    file the repo holds at the revision but the manifest leaves out is appended to `findings`."""
    sources = recipe_sources(recipe)
    resolved = {s.prefix: check_revision(s, endpoint) for s in sources}
    for s in sources:
        if resolved[s.prefix] != s.revision:  # a branch or tag: it can move, so it is no pin
            kind = "model" if s.repo_type == "model" else "data"
            raise UsageError(f"{recipe.dir / 'recipe.toml'}: [{kind}] revision {s.revision!r} is not a commit; "
                             f"pin the commit it names now: revision = \"{resolved[s.prefix]}\"")
    comments, header = manifest_header(recipe)
    entries: list[mf.Entry] = []
    data_file = recipe.dataset.file or None
    for src in sources:
        try:
            tree = repo_tree(src, endpoint)
        except hub_errors() as e:
            raise RecipeError(f"cannot list {src.repo_id}@{src.revision}: {_one_line(e)}",
                              failure_code(e)) from None
        prefix = src.prefix.rstrip("/") + "/"
        listed = old.entries if old else []
        wanted = sorted(e.path[len(prefix):] for e in listed if e.path.startswith(prefix))
        is_data = src.repo_type == "dataset" and data_file
        if is_data and not wanted:
            wanted = [data_file]
        elif not is_data and (all_files or not wanted):
            wanted = sorted(p for p in tree if p not in NOT_IN_MANIFEST)
        if not is_data and findings is not None:
            for name in sorted(set(tree) - set(wanted) - set(NOT_IN_MANIFEST)):
                findings.append(f"{prefix}{name}: in {src.repo_id} at {src.revision[:12]} but not in the manifest "
                                f"({tree[name].size} bytes); the stack may load it: `recipe lock {recipe.name} "
                                f"--all-files` pins every file")
        for name in wanted:
            if name not in tree:
                raise RecipeError(f"{prefix}{name}: not in {src.repo_id} at revision {src.revision}; "
                                  f"remove it from the manifest or pin another revision", EXIT_FAIL)
            entries.append(_entry(src, prefix, name, tree[name], endpoint, log))
    return mf.Manifest(header=header, entries=entries, comments=comments)


def _entry(src: Source, prefix: str, name: str, f: TreeFile, endpoint: str | None,
           log: Callable[[str], None]) -> mf.Entry:
    if f.sha256 is not None:  # LFS: the tree's blob id is the pointer's, not the content's; not recorded
        return mf.Entry(prefix + name, f.sha256, f.size)
    if f.size > SMALL_FILE_MAX:
        log(f"{prefix}{name}: not an LFS file and {f.size} bytes: pinned by its git blob id {f.git_blob} and size; "
            f"`recipe fetch` checks it and records its sha256")
        return mf.Entry(prefix + name, None, f.size, f.git_blob)
    log(f"{prefix}{name}: not an LFS file, downloading {f.size} bytes to check its git blob id and hash it")
    return mf.Entry(prefix + name, hash_small_file(src, name, f.size, endpoint, f.git_blob), f.size, f.git_blob)


def diff(old: mf.Manifest | None, new: mf.Manifest) -> list[str]:
    """One line per change: header fields, added (+), removed (-) and changed (~) files."""
    if old is None:
        return [f"+ {e.path} ({e.size} bytes)" for e in new.entries]
    out = []
    for k in dict.fromkeys([*old.header, *new.header]):
        if old.header.get(k) != new.header.get(k):
            out.append(f"~ header {k}: {old.header.get(k)} -> {new.header.get(k)}")
    a, b = old.by_path(), new.by_path()
    for p in sorted(set(a) | set(b)):
        if p not in a:
            out.append(f"+ {p} ({b[p].size} bytes)")
        elif p not in b:
            out.append(f"- {p}")
        elif (a[p].sha256, a[p].size, a[p].git_blob) != (b[p].sha256, b[p].size, b[p].git_blob):
            out.append(f"~ {p}: sha256 {_short(a[p].sha256)} -> {_short(b[p].sha256)}, size {a[p].size} -> "
                       f"{b[p].size}, git blob {_short(a[p].git_blob)} -> {_short(b[p].git_blob)}")
    return out


def _short(h: str | None) -> str:
    if h is None:
        return "(none)"
    return h if h == mf.UNKNOWN else h[:12] + "…"


# ---- image tag -> digest ------------------------------------------------------------------------

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


@dataclass
class ImageDigest:
    reference: str  # registry/repo:tag that was asked about
    pinned: str | None  # the digest recipe.toml pins
    digest: str | None = None  # what the registry says now; None if it could not be asked
    via: str = ""
    error: str | None = None
    reachable: bool = False

    def describe(self) -> str:
        if self.digest is None:
            what = "registry answered but did not resolve the tag" if self.reachable else "registry not reachable"
            return f"image: {self.reference}: {what} ({self.error}); keeping the pinned digest {self.pinned}"
        if self.digest == self.pinned:
            return f"image: {self.reference} still resolves to the pinned {self.digest} (via {self.via})"
        return (f"image: WARNING {self.reference} now resolves to {self.digest} but recipe.toml pins "
                f"{self.pinned}; recipe.toml is left as is: change [image].reference deliberately")


def split_reference(ref: str) -> tuple[str, str, str, str | None]:
    """'radixark/miles:v0.1.0@sha256:..' -> (registry, repository, tag, digest), as the registry API names them."""
    from runner.image.ref import parse_image

    r = parse_image(ref)
    return (*r.hub_path(), r.digest or None)


def resolve_image_digest(reference: str, timeout: float = 5.0) -> ImageDigest:
    registry, repo, tag, pinned = split_reference(reference)
    out = ImageDigest(f"{registry}/{repo}:{tag}", pinned)
    if shutil.which("skopeo") and not os.environ.get("RECIPE_REGISTRY_URL"):
        try:
            raw = subprocess.run(["skopeo", "inspect", "--raw", f"docker://{registry}/{repo}:{tag}"],
                                 capture_output=True, timeout=60, check=True).stdout
            out.digest, out.via = "sha256:" + hashlib.sha256(raw).hexdigest(), "skopeo"
            return out
        except (subprocess.SubprocessError, OSError) as e:
            out.error = f"skopeo: {_one_line(e)}"
    base = os.environ.get("RECIPE_REGISTRY_URL") or (
        "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}")
    url = f"{base.rstrip('/')}/v2/{repo}/manifests/{tag}"
    try:
        out.digest = _head_digest(url, timeout)
        out.via, out.reachable = base, True
    except ValueError as e:  # an HTTP answer that is not a digest
        out.error, out.reachable = f"{base}: {_one_line(e)}", True
    except (urllib.error.URLError, OSError) as e:
        out.error = f"{base}: {_one_line(getattr(e, 'reason', e))}"
    return out


def _head_digest(url: str, timeout: float) -> str:
    headers = {"Accept": MANIFEST_TYPES}
    for _ in range(2):
        req = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                digest = r.headers.get("Docker-Content-Digest")
                if not digest:
                    raise ValueError("no Docker-Content-Digest header in the answer")
                return digest
        except urllib.error.HTTPError as e:
            challenge = e.headers.get("WWW-Authenticate", "")
            if e.code != 401 or not challenge.lower().startswith("bearer") or "Authorization" in headers:
                raise ValueError(f"HTTP {e.code} for {url}") from None
            headers["Authorization"] = f"Bearer {_anonymous_token(challenge, timeout)}"
    raise ValueError(f"no answer for {url}")


def _anonymous_token(challenge: str, timeout: float) -> str:
    # Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"
    fields = dict(part.split("=", 1) for part in challenge[len("Bearer "):].split(",") if "=" in part)
    fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
    realm = fields.pop("realm")
    query = "&".join(f"{k}={urllib.request.quote(v, safe=':/')}" for k, v in fields.items())
    with urllib.request.urlopen(f"{realm}?{query}", timeout=timeout) as r:
        body = json.loads(r.read())
    return body.get("token") or body["access_token"]
