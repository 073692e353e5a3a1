"""`recipe diff`: what differs between two runs (or a run and the blessed reference).

`recipe diff BASE OTHER` (git's order) makes OTHER side A and BASE side B, the baseline;
`recipe diff RUN` makes RUN side A and the recipe's blessed reference side B.

    a = side(run_dir_a); b = side(run_dir_b) or reference_side(recipe)
    d = diff(a, b, expected)      -> {"provenance": [...], "metrics": [...], ...}
    format_text(d)                -> two tables

Provenance: one row per field that differs, field names as dotted paths (`argv --seed`,
`job_env NCCL_DEBUG`, `recipe_files NAME/run.sh`, `host.driver`). A run's own places
and id (run directory, output directory, run id) are replaced by <RUN_DIR>, <OUTPUT_DIR>, <RUN_ID>
before comparing, and what is chosen anew for every run (ports, temp dirs, times, pids) is left
out, so that two launches of one recipe with the same flags differ in nothing here.

Metrics: per metric, the largest relative difference |a - b| / |b| over the steps both have (B is
the baseline; where b is 0, |a - b| / max(|a|, |b|)), the step where it occurs, and, for metrics
the recipe holds to the reference with band or relative rules, the first step at which A leaves
B's band (B taken as the reference).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import console
from runner.gate.expected import Expected
from runner.gate.metrics import Series, same_bits
from runner.gate.rules import Band, Relative

# Fields compared as plain values (dotted paths into run.json)
PLAIN_FIELDS = ("recipe", "image", "bundle.commit", "bundle.dirty", "bundle.source", "recipe_digest", "cell",
                "backend", "nodes", "gpus_per_node", "layout", "determinism", "deterministic", "seeds",
                "inputs_dir", "inputs_verification.status", "inputs_verification.data.manifest_sha256",
                "inputs_verification.data.files", "inputs_verification.data.bytes",
                "inputs_verification.data.counts", "host.hostname", "host.os", "host.python", "host.cpu",
                "host.cpu_count", "host.gpus", "host.gpu_count", "host.driver", "host.runner_version",
                "preflight_skipped", "status", "exit_code")
# Settings chosen anew for each run: never a difference worth showing
PER_RUN_ENV = ("RECIPE_RUN_ID", "RECIPE_RUN_DIR", "RECIPE_OUTPUT_DIR", "RECIPE_RAY_")
MISSING = "<absent>"


@dataclass
class Side:
    label: str                    # what the user named: a run directory or "reference of NAME"
    record: dict[str, Any]        # run.json, or the reference's provenance
    series: Series
    run_dir: str = ""
    notes: list[str] = field(default_factory=list)


def get(record: dict[str, Any], path: str) -> Any:
    cur: Any = record
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def normalizer(record: dict[str, Any]):
    """Replace a run's own run directory, output directory and id in a string (longest first)."""
    name = record.get("recipe")
    pairs = [(record.get("output_dir"), "<OUTPUT_DIR>"), (record.get("run_dir"), "<RUN_DIR>"),
             (record.get("run_id"), "<RUN_ID>"),
             # a copy of a recipe under another name: its own files are where they were inside it
             (f"/recipes/{name}/" if isinstance(name, str) and name else None, "/recipes/<RECIPE>/")]
    pairs = [(k, v) for k, v in pairs if isinstance(k, str) and k]

    def norm(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for k, v in pairs:
            value = value.replace(k, v)
        return value

    return norm


def argv_flags(argv: list[str]) -> dict[str, list[str]]:
    """--flag -> its values (a flag given twice keeps both); words before the first flag under ''."""
    flags: dict[str, list[str]] = {}
    current = ""
    for word in argv:
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            current = name
            flags.setdefault(current, [])
            if eq:
                flags[current].append(value)
        else:
            flags.setdefault(current, []).append(word)
    return flags


def _dict_rows(prefix: str, a: dict[str, Any], b: dict[str, Any], skip=()) -> list[dict[str, Any]]:
    rows = []
    for k in sorted(set(a) | set(b)):
        if k.startswith(skip) if skip else False:
            continue
        va, vb = a.get(k, MISSING), b.get(k, MISSING)
        if va != vb:
            rows.append({"field": f"{prefix} {k}", "a": va, "b": vb})
    return rows


def provenance_diff(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows of fields that differ, names of the fields compared and equal)."""
    na, nb = normalizer(a), normalizer(b)
    rows: list[dict[str, Any]] = []
    same: list[str] = []
    # what the run was told first (argv, its environments), then its recipe's files, then the rest
    fa = argv_flags([na(w) for w in a.get("argv") or [] if isinstance(w, str)])
    fb = argv_flags([nb(w) for w in b.get("argv") or [] if isinstance(w, str)])
    found = [{"field": f"argv {k}" if k else "argv (before any flag)",
              "a": " ".join(fa[k]) if k in fa else MISSING, "b": " ".join(fb[k]) if k in fb else MISSING}
             for k in sorted(set(fa) | set(fb), key=lambda k: (k not in fa, k)) if fa.get(k) != fb.get(k)]
    rows += found
    if not found:
        same.append("argv")

    def mapped(rec, key, norm):
        v = rec.get(key)
        if not isinstance(v, dict):
            return {}
        if key == "recipe_files":  # keyed by the path inside the recipe, whatever its directory's name
            name = rec.get("recipe")
            return {(f"<RECIPE>/{k[len(name) + 1:]}" if isinstance(name, str) and name and k.startswith(f"{name}/")
                     else k): norm(x) for k, x in v.items()}
        return {k: norm(x) for k, x in v.items()}

    for key, skip in (("job_env", ()), ("script_env", PER_RUN_ENV), ("environment", PER_RUN_ENV),
                      ("recipe_files", ())):
        found = _dict_rows(key, mapped(a, key, na), mapped(b, key, nb), skip)
        rows += found
        if not found:
            same.append(key)
    for path in PLAIN_FIELDS:
        va, vb = get(a, path), get(b, path)
        (same.append(path) if va == vb else rows.append({"field": path, "a": va, "b": vb}))
    return rows, same


def summary(rows: list[dict[str, Any]]) -> str:
    """One line: how many differences of each kind, the argv's flags named ("argv 1 (--lr), recipe
    files 1, ...")."""
    kinds: dict[str, list[str]] = {}
    for r in rows:
        kind, _, rest = str(r["field"]).partition(" ")
        kind = {"job_env": "job env", "script_env": "script env", "recipe_files": "recipe files"}.get(kind, kind)
        if kind not in ("argv", "job env", "script env", "environment", "recipe files"):
            kind = "other fields"
        kinds.setdefault(kind, []).append(rest)
    parts = []
    for kind, names in kinds.items():
        shown = f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if kind == "argv" else ""
        parts.append(f"{kind} {len(names)}{shown}")
    return ", ".join(parts)


def package_versions(record: dict[str, Any]) -> dict[str, Any]:
    """{distribution: version or None} that run.json's `packages` records (the job's interpreter's)."""
    v = get(record, "packages.versions")
    return v if isinstance(v, dict) else {}


def packages_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per recorded package whose version differs (absent on one side shows as <absent>)."""
    pa, pb = package_versions(a), package_versions(b)
    return [{"package": k, "a": pa.get(k, MISSING), "b": pb.get(k, MISSING)}
            for k in sorted(set(pa) | set(pb)) if pa.get(k, MISSING) != pb.get(k, MISSING)]


# -- metrics ----------------------------------------------------------------------------------------

def rel_diff(a: float, b: float) -> float:
    if same_bits(a, b) or (a == b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    base = abs(b) if b != 0 else max(abs(a), abs(b))
    return abs(a - b) / base


def first_out_of_band(rule: Band | Relative, a: dict[int, float], b: dict[int, float]) -> int | None:
    """The first step of B (as the reference) at which A leaves the rule's band; None if it never does."""
    for s in sorted(b):
        if isinstance(rule, Relative) and s < rule.from_step:
            continue
        x, r = a.get(s), b[s]
        if x is None or not math.isfinite(x) or not math.isfinite(r) or rule.out_at(x, r):
            return s
    return None


def metrics_diff(a: Series, b: Series, expected: Expected | None) -> list[dict[str, Any]]:
    rules: dict[str, list[Band | Relative]] = {}
    for r in expected.rules if expected else ():
        if isinstance(r, Band | Relative):
            rules.setdefault(r.metric, []).append(r)
    out = []
    for m in sorted(set(a.values) | set(b.values)):
        va, vb = a.values.get(m, {}), b.values.get(m, {})
        row: dict[str, Any] = {"metric": m, "steps_a": len(va), "steps_b": len(vb)}
        if not va or not vb:
            row["only_in"] = "a" if va else "b"
            out.append(row)
            continue
        common = sorted(set(va) & set(vb))
        worst, at = 0.0, None
        for s in common:
            d = rel_diff(va[s], vb[s])
            if at is None or d > worst:
                worst, at = d, s
        row.update(identical=all(same_bits(va[s], vb[s]) for s in common) and set(va) == set(vb),
                   max_rel_diff=worst, at_step=at, a=va.get(at), b=vb.get(at),
                   steps_only_a=len(set(va) - set(vb)), steps_only_b=len(set(vb) - set(va)))
        if m in rules:
            row["bands"] = [{"rule": r.name, "bound": r.bound_text(), "first_step_out": first_out_of_band(r, va, vb)}
                            for r in rules[m]]
        out.append(row)
    return out


def diff(a: Side, b: Side, expected: Expected | None) -> dict[str, Any]:
    missing = [x.label for x in (a, b) if not x.record]
    rows, same = provenance_diff(a.record, b.record) if not missing else ([], [])
    return {"a": {"label": a.label, "run_id": a.record.get("run_id"), "run_dir": a.run_dir},
            "b": {"label": b.label, "run_id": b.record.get("run_id"), "run_dir": b.run_dir},
            "expected": str(expected.path) if expected else None,
            "provenance_compared": not missing, "provenance": rows, "provenance_same": same,
            "packages_recorded": [x.label for x in (a, b) if package_versions(x.record)],
            "packages": packages_diff(a.record, b.record) if not missing else [],
            "metrics": metrics_diff(a.series, b.series, expected),
            "notes": a.notes + b.notes}


# -- output ---------------------------------------------------------------------------------------

def _cell(v: Any, width: int = 44) -> str:
    text = v if isinstance(v, str) else "true" if v is True else "false" if v is False else \
        "null" if v is None else str(v)
    text = " ".join(console.safe(text).split())
    return console.elide(text, width)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _packages_text(d: dict[str, Any]) -> list[str]:
    pk, recorded = d.get("packages", []), d.get("packages_recorded", [])
    if len(recorded) < 2:
        return [*_para(f"packages: not compared ({'only one side records' if recorded else 'neither side records'} "
                       "package versions)"), ""]
    lines = [f"packages: {len(pk)} version(s) differ"]
    if pk:
        lines.append(console.table(("package", "base", "other"),
                                   [(r["package"], _cell(r["b"]), _cell(r["a"])) for r in pk]))
    return [*lines, ""]


def _para(text: str) -> list[str]:
    """A line of text, wrapped to the console's width (words whole), made safe to print."""
    return console.wrap(console.safe(text), console.width(sys.stdout), indent=4)


def format_text(d: dict[str, Any]) -> str:
    """Three tables (console.table: every cell made safe to print, records and metric names being data) and
    the lines that head them, fitted to the console's width."""
    # `recipe diff BASE OTHER`: the base first, as the user typed it, and in that order everywhere below
    lines = [*_para(f"base:  {d['b']['label']}"), *_para(f"other: {d['a']['label']}"), ""]
    prov = d["provenance"]
    if not d["provenance_compared"]:
        lines.append("provenance: not compared (a side has no run record)")
    else:
        lines += _para(f"provenance: {len(prov)} field(s) differ, {len(d['provenance_same'])} compared equal"
                       + (f": {summary(prov)}" if prov else ""))
    if prov:
        lines.append(console.table(("field", "base", "other"),
                                   [(_cell(r["field"], 48), _cell(r["b"]), _cell(r["a"])) for r in prov]))
    lines.append("")
    lines += _packages_text(d)
    rows = []
    for m in d["metrics"]:
        if "only_in" in m:
            rows.append((m["metric"], f"{m['steps_b']}/{m['steps_a']}",
                         f"only in {'base' if m['only_in'] == 'b' else 'other'}", "", ""))
            continue
        rel = "identical" if m["identical"] else f"{m['max_rel_diff']:.3g}" if math.isfinite(m["max_rel_diff"]) \
            else "inf (NaN/inf on one side)"
        where = "" if m["identical"] else f"step {m['at_step']}: {_num(m['b'])} -> {_num(m['a'])}"
        bands = "; ".join(f"{bd['rule']}: " + ("within" if bd["first_step_out"] is None
                                               else f"out from step {bd['first_step_out']}")
                          for bd in m.get("bands", []))
        rows.append((m["metric"], f"{m['steps_b']}/{m['steps_a']}", rel, where, bands or "-"))
    differ = sum(1 for m in d["metrics"] if not m.get("identical"))
    lines += _para(f"metrics: {differ} of {len(d['metrics'])} differ (relative difference to the base; band: the "
                   "base as reference)")
    if rows:
        head = ("metric", "steps base/other", "max rel diff", "where (base -> other)", "band")
        lines.append(console.table(head, rows, no_wrap=("metric",)))   # a name a reader copies stays whole
    lines += [w for n in d["notes"] for w in _para(f"note: {n}")]
    return "\n".join(lines)


def json_ready(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
