"""`recipe doctor`: does this container hold what docker/image.lock says the image holds?

Compares the commits of the source trees (/root/miles, /sgl-workspace/sglang, /root/Megatron-LM;
read from .git without git), the Megatron-Bridge commit and the installed package versions with
the lock, imports the CUDA kernels the recipe needs when a GPU is present, and imports the model
family's bridge plugin. `recipe run` calls run_doctor() in its image preflight and stores the table.

Test hooks: RECIPE_DOCTOR_ROOT prefixes every install path (fake roots), RECIPE_DOCTOR_SITE
(os.pathsep list) replaces sys.path for package metadata, RECIPE_IMAGE_LOCK names another lock.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner import console
from runner.checks import CheckStatus
from runner.frameworks import framework_of, options_of
from runner.gitrefs import GitReadError, head_commit
from runner.image.enroot import container_labels
from runner.image.lock import load_lock, lock_path
from runner.paths import bundle_root
from runner.plan.render import render_plan

# Row statuses. Only "mismatch", "missing" and "error" make a report not ok.
OK, MISMATCH, MISSING, ERROR, RECORDED, SKIPPED = "ok", "mismatch", "missing", "error", "recorded", "skipped"
UNCHECKED = (CheckStatus.SKIPPED, CheckStatus.NA)   # a preflight check that said nothing
BAD = {MISMATCH, MISSING, ERROR}
IMPORT_TIMEOUT_S = 300


@dataclass
class Row:
    kind: str  # image | commit | version | kernel | plugin
    name: str
    expected: str
    found: str
    status: str
    detail: str = ""


@dataclass
class DoctorReport:
    lock: str
    in_image: bool
    gpu: bool
    rows: list[Row] = field(default_factory=list)
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the image's labels, where the runtime keeps them

    @property
    def ok(self) -> bool:
        return self.in_image and not any(r.status in BAD for r in self.rows)

    def problems(self) -> list[Row]:
        return [r for r in self.rows if r.status in BAD]

    def summary(self) -> str:
        if not self.in_image:
            return "not the pinned GPU image (its source trees are absent)"
        bad = self.problems()
        if not bad:
            return "commits and versions match the lock"
        first = ", ".join(f"{r.name} {r.status} (want {r.expected}, found {r.found})" for r in bad[:3])
        return f"{len(bad)} problem(s): {first}" + (" ..." if len(bad) > 3 else "")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "in_image": self.in_image, "gpu": self.gpu, "lock": self.lock,
                "image": self.image, "labels": self.labels, "summary": self.summary(),
                "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        head = ("kind", "name", "expected", "found", "status")
        body = [(r.kind, r.name, _short(r.expected), _short(r.found), r.status + (f" ({r.detail})" if r.detail else ""))
                for r in self.rows]
        lines = [console.table(head, body, no_wrap=("kind", "expected", "found"), min_width={"status": 20})]
        verdict = "OK" if self.ok else "NOT OK"
        about = [f"image: {self.image}"] if self.image else []
        about += [f"label {k}: {v}" for k, v in sorted(self.labels.items())]
        return "\n".join([*about, *lines, f"doctor: {verdict}: {self.summary()} (lock {self.lock})"])


def _short(v: str) -> str:
    """Commits and digests to 12 hex digits for the table (as_dict keeps them whole)."""
    hexd = v.removeprefix("sha256:")
    if len(hexd) in (40, 64) and all(c in "0123456789abcdef" for c in hexd):
        return v[:len(v) - len(hexd)] + hexd[:12]
    return v


def rooted(path: str) -> Path:
    root = os.environ.get("RECIPE_DOCTOR_ROOT", "")
    return Path(root + path) if root else Path(path)


def site_paths() -> list[str]:
    env = os.environ.get("RECIPE_DOCTOR_SITE")
    return env.split(os.pathsep) if env else list(sys.path)


def installed_version(dist: str) -> str | None:
    for d in md.distributions(name=dist, path=site_paths()):
        return d.version
    return None


def version_matches(expected: str, found: str) -> bool:
    """Exact, or the same release with a local build label (2.11.0 matches 2.11.0+cu130)."""
    return found == expected or found.startswith(expected + "+")


def check_commit(name: str, spec: dict[str, Any]) -> Row:
    want = spec.get("commit", "unknown")
    if "path" in spec:
        tree = rooted(spec["path"])
        if not tree.is_dir():
            return Row("commit", name, want, "absent", MISSING, f"{tree} not found")
        try:
            found = head_commit(tree)
        except (GitReadError, OSError) as e:
            return Row("commit", name, want, "unreadable", ERROR, str(e))
        where = str(tree)
    else:
        found, where = bridge_commit(spec.get("distribution", name))
        if found is None:
            return Row("commit", name, want, "absent", MISSING, where)
    if want == "unknown":
        return Row("commit", name, want, found, RECORDED, where)
    return Row("commit", name, want, found, OK if found == want else MISMATCH, where)


def bridge_commit(dist: str) -> tuple[str | None, str]:
    """A package installed from git records its commit in PEP 610 direct_url.json."""
    for d in md.distributions(name=dist, path=site_paths()):
        raw = d.read_text("direct_url.json")
        if not raw:
            return "no direct_url.json", f"{dist} {d.version} (not installed from a VCS URL)"
        info = json.loads(raw)
        commit = info.get("vcs_info", {}).get("commit_id")
        return (commit or "no commit_id"), f"{dist} {d.version} from {info.get('url', '?')}"
    return None, f"distribution {dist} not installed"


def check_version(dist: str, want: str) -> Row:
    found = installed_version(dist)
    if found is None:
        return Row("version", dist, want, "absent", RECORDED if want == "unknown" else MISSING)
    if want == "unknown":
        return Row("version", dist, want, found, RECORDED, "lock has no pin: recorded")
    return Row("version", dist, want, found, OK if version_matches(want, found) else MISMATCH)


def check_import(kind: str, module: str) -> Row:
    """Import in a child interpreter: a kernel that segfaults or hangs must not take the doctor down."""
    code = f"import importlib; importlib.import_module({module!r})"
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Row(kind, module, "importable", "timeout", ERROR, f"no import within {IMPORT_TIMEOUT_S}s")
    if p.returncode == 0:
        return Row(kind, module, "importable", "imported", OK)
    last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    status = MISSING if "ModuleNotFoundError" in last else ERROR
    return Row(kind, module, "importable", "failed", status, last[:160])


def gpu_present() -> bool:
    if os.environ.get("RECIPE_DOCTOR_GPU") in ("0", "1"):  # tests; or a host that hides /dev/nvidia*
        return os.environ["RECIPE_DOCTOR_GPU"] == "1"
    return Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()


def check_base(lock: dict[str, Any]) -> Row:
    """Which base this image was built on: docker/Dockerfile writes it to <bundle>/build.json."""
    base = lock.get("base", {})
    want = base.get("digest") or (base.get("reference", "").partition("@")[2] or "unknown")
    info = bundle_root() / "build.json"
    if not info.is_file():
        return Row("image", "base", want, "no build.json", RECORDED,
                   "not running from an image built by docker/Dockerfile")
    try:
        built = json.loads(info.read_text())
    except (OSError, ValueError) as e:
        return Row("image", "base", want, "unreadable", ERROR, f"{info}: {e}")
    found = built.get("base_digest", "unknown")
    return Row("image", "base", want, found, OK if found == want else MISMATCH,
               f"built on {built.get('base', '?')} at bundle {built.get('revision', '?')[:12]}")


def variant_rows(lock: dict[str, Any]) -> list[Row]:
    """Say what the lock does not know (e.g. the CUDA 12.9 image's digest) instead of inventing it."""
    rows = []
    for name, v in lock.get("variants", {}).items():
        digest = v.get("digest", "unknown")
        detail = (f"{v.get('reference', '?')} (CUDA {v.get('cuda', '?')}, driver >= {v.get('min_driver', '?')}): "
                  + ("digest not known to the lock; resolve it yourself and build with BASE_IMAGE=<ref@digest>"
                     if digest == "unknown" else "alternative base"))
        rows.append(Row("image", f"variant {name}", digest, "-", RECORDED, detail))
    return rows


def args_rows(recipe, plan) -> list[Row]:
    """`recipe doctor NAME`: the framework's `args` check on the recipe's default launch (miles: its
    own parser, runner/frameworks/miles_args.py), one row per problem it reports."""
    fw = framework_of(recipe)
    if "args" not in fw.PREFLIGHT:
        return []
    check = fw.preflight_check("args", _DoctorLaunch(recipe, plan))
    name = f"{recipe.name} argv"
    if check.status == CheckStatus.OK:
        return [Row("args", name, f"accepted by {recipe.framework}", "accepted", OK, check.detail)]
    if check.status in UNCHECKED:
        return [Row("args", name, f"accepted by {recipe.framework}", "not checked", SKIPPED, check.detail)]
    lines = (check.data or {}).get("lines") or [check.detail]
    return [Row("args", name, f"accepted by {recipe.framework}", "rejected", ERROR, line) for line in lines]


def model_rows(recipe, plan) -> list[Row]:
    """`recipe doctor NAME`: the model the stack builds in bridge mode against the recipe
    (runner/frameworks/miles_model.py), one row per compared field and per problem."""
    fw = framework_of(recipe)
    if "model" not in fw.PREFLIGHT:
        return []
    check = fw.preflight_check("model", _DoctorLaunch(recipe, plan))
    data = check.data or {}
    if check.status in UNCHECKED or not data.get("rows"):
        found = "not checked" if check.status in UNCHECKED else "not built"
        status = SKIPPED if check.status in UNCHECKED else ERROR
        return [Row("model", f"{recipe.name} model", "built as the recipe states", found, status, check.detail)]
    rows = [Row("model", r["field"], repr(r["claimed"]), repr(r["built"]),
                {"ok": OK, "accepted": OK, "differs": ERROR}[r["status"]],
                r["source"] + (f"; accepted: {r['why']}" if r["why"] else "")) for r in data["rows"]]
    bridge = (data.get("bridge") or {}).get("name") or "?"
    want = options_of(recipe).bridge or bridge
    rows.insert(0, Row("model", "bridge", want, bridge, OK if bridge == want else ERROR,
                       (data.get("bridge") or {}).get("module", "")))
    # the problems that are not one field's: a plugin that failed to load, a failed finalize()
    rows += [Row("model", p["kind"], "no problem", "problem", ERROR, p["line"])
             for p in data.get("problems", []) if p["kind"] in ("plugin", "finalize")]
    return rows


@dataclass
class _DoctorLaunch:
    """What a framework's preflight check reads of a launch: the recipe and its rendered plan."""
    recipe: object
    plan: object


def run_doctor(recipe=None, with_args: bool = False) -> DoctorReport:
    path = lock_path(recipe)
    lock = load_lock(path)
    commits = lock.get("commits", {})
    anchor = next((s["path"] for s in commits.values() if "path" in s), None)
    report = DoctorReport(lock=str(path), in_image=bool(anchor) and rooted(anchor).is_dir(), gpu=gpu_present(),
                          image=os.environ.get("RECIPE_IMAGE"), labels=container_labels())
    report.rows.append(check_base(lock))
    report.rows.extend(variant_rows(lock))
    for name, spec in commits.items():
        report.rows.append(check_commit(name, spec))
    for dist, want in lock.get("versions", {}).items():
        report.rows.append(check_version(dist, str(want)))
    for module in lock.get("kernels", {}).get("modules", []):
        if report.gpu:
            report.rows.append(check_import("kernel", module))
        else:
            report.rows.append(Row("kernel", module, "importable", "not tried", SKIPPED, "no GPU on this host"))
    for module in lock.get("plugins", {}).get("modules", []):
        report.rows.append(check_import("plugin", module))
    if with_args and recipe is not None:
        plan = render_plan(recipe)  # once: both checks judge the same rendered launch
        report.rows.extend(args_rows(recipe, plan))
        report.rows.extend(model_rows(recipe, plan))
    return report
