"""The expected-metrics gate: evaluate a recipe's rules on a run's series, and compare two runs.

    series = metrics.collect(run_dir)                      # runner/gate/metrics.py
    result = evaluate(load_expected(path), series)         # bands use the blessed reference, if any
    result.passed, result.rows, result.as_dict()
    compare_exact(a, b)            -> ["train/loss step 3: 0x1.2p-3 != 0x1.3p-3", ...]  (bit for bit)
    compare_bands(a, b, expected)  -> GateResult of the band rules with b as the reference

Verdicts: pass, fail, blocked (the rule holds but a completion rule failed, so it proves
nothing), unreferenced (a band rule with no blessed reference; does not decide the gate).
A missing value, NaN or inf fails the rule it touches. The rule model is runner/gate/expected.py.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.atomicfile import write_text_atomic
from runner.gate.expected import Expected, Rule, load_expected  # noqa: F401  (re-exported for callers)
from runner.gate.metrics import Series, same_bits, step_key_for
from runner.gate.reference import load_reference

PASS, FAIL, BLOCKED, UNREFERENCED = "pass", "fail", "blocked", "unreferenced"
MAX_LISTED = 5  # failing steps listed per row


@dataclass
class Row:
    rule: Rule
    verdict: str
    observed: str
    # {"step", "value", "problem" (missing/nan/inf, else None), optional "note"}
    failures: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def name(self) -> str:
        return self.rule.name

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "kind": self.rule.kind, "metric": self.rule.metric,
                "verdict": self.verdict, "observed": self.observed, "bound": self.rule.bound_text(),
                "why": self.rule.why, "detail": self.detail, "failures": self.failures[:MAX_LISTED],
                "failures_total": len(self.failures)}


@dataclass
class GateResult:
    rows: list[Row]
    expected_path: str = ""
    reference: dict[str, Any] | None = None    # the reference's provenance, if bands used one
    series_source: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.verdict in (PASS, UNREFERENCED) for r in self.rows)

    def failed_rows(self) -> list[Row]:
        return [r for r in self.rows if r.verdict not in (PASS, UNREFERENCED)]

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return {"status": "passed" if self.passed else "failed", "passed": self.passed, "counts": counts,
                "expected": self.expected_path, "reference": self.reference, "series_source": self.series_source,
                "rows": [r.as_dict() for r in self.rows]}


# -- evaluation ------------------------------------------------------------------------------

_AUTO = object()


def evaluate(expected: Expected, series: Series, reference: Series | None | object = _AUTO) -> GateResult:
    """Every rule of `expected` on `series`. Bands use `reference`, by default the blessed one."""
    if reference is _AUTO:
        reference = load_reference(expected.path)
    completion = [_completion(r, series) for r in expected.rules if r.kind == "completion"]
    complete = all(row.verdict == PASS for row in completion)
    rows: list[Row] = []
    done = iter(completion)
    for rule in expected.rules:
        if rule.kind == "completion":
            rows.append(next(done))
            continue
        row = _evaluate_rule(rule, expected, series, reference)  # type: ignore[arg-type]
        if not complete and row.verdict == PASS:
            row.verdict = BLOCKED
            row.detail = "a completion rule failed: a partial run proves nothing"
        rows.append(row)
    return GateResult(rows=rows, expected_path=str(expected.path), series_source=series.source,
                      reference=(reference.extra.get("provenance") or {}) if isinstance(reference, Series) else None)


def expected_steps(metric: str, expected: Expected, series: Series) -> list[int]:
    """Steps the metric must have: all its step key reached, plus 0..K of completion rules on that key."""
    key = step_key_for(metric)
    steps = set(series.key_steps(key))
    for c in expected.completion_rules():
        if step_key_for(c.metric) == key:
            steps.update(range(c.step + 1))
    return sorted(steps)


def _problem(v: float | None) -> str | None:
    if v is None:
        return "missing"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def _fmt(v: float | None) -> str:
    return _problem(v) if _problem(v) else f"{v:.6g}"


def _completion(rule: Rule, series: Series) -> Row:
    steps = series.steps(rule.metric)
    last = steps[-1] if steps else None
    if rule.step in series.values.get(rule.metric, {}):
        return Row(rule, PASS, f"reached step {last}")
    observed = f"last step {last}" if last is not None else "no values"
    return Row(rule, FAIL, observed, [{"step": rule.step, "value": None, "problem": "missing"}])


def _compare(rule: Rule, x: float) -> bool:
    if rule.abs:
        x = abs(x)
    return (rule.lower is None or rule.lower.lower_ok(x)) and (rule.upper is None or rule.upper.upper_ok(x))


def _failures_row(rule: Rule, failures: list[dict[str, Any]], observed_ok: str) -> Row:
    if not failures:
        return Row(rule, PASS, observed_ok)
    shown = ", ".join(f"step {f['step']}: {f['problem'] or _fmt(f['value'])}"
                      + (f" ({f['note']})" if f.get("note") else "") for f in failures[:2])
    more = f" (+{len(failures) - 2} more)" if len(failures) > 2 else ""
    return Row(rule, FAIL, shown + more, failures)


def _evaluate_rule(rule: Rule, expected: Expected, series: Series, reference: Series | None) -> Row:
    values = series.values.get(rule.metric, {})
    steps = expected_steps(rule.metric, expected, series)
    if not steps and rule.kind != "band":
        return Row(rule, FAIL, "no values", [{"step": None, "value": None, "problem": "missing"}])

    if rule.kind == "finite":
        failures = [{"step": s, "value": None, "problem": _problem(values.get(s))}
                    for s in steps if _problem(values.get(s))]
        return _failures_row(rule, failures, f"{len(steps)}/{len(steps)} finite")

    if rule.kind == "band":
        return _band(rule, values, reference)

    if rule.kind == "trend":
        n = rule.window
        if len(steps) < n:
            return Row(rule, FAIL, f"{len(steps)} steps < window {n}",
                       [{"step": None, "value": None, "problem": f"needs {n} steps"}])
        head, tail = steps[:n], steps[-n:]
        bad = [{"step": s, "value": None, "problem": _problem(values.get(s))}
               for s in sorted(set(head + tail)) if _problem(values.get(s))]
        if bad:
            return _failures_row(rule, bad, "")
        delta = statistics.fmean(values[s] for s in tail) - statistics.fmean(values[s] for s in head)
        ok = _compare(rule, delta)
        return Row(rule, PASS if ok else FAIL, f"delta = {delta:+.6g}",
                   [] if ok else [{"step": None, "value": delta, "problem": None}])

    # bound
    if rule.at == "step":
        v = values.get(rule.step)
        problem = _problem(v)
        ok = problem is None and _compare(rule, v)
        observed = f"x[{rule.step}] = {_fmt(v)}"
        return Row(rule, PASS if ok else FAIL, observed,
                   [] if ok else [{"step": rule.step, "value": None if problem else v, "problem": problem}])
    if rule.at == "every":
        failures = []
        for s in steps:
            v = values.get(s)
            problem = _problem(v)
            if problem or not _compare(rule, v):
                failures.append({"step": s, "value": None if problem else v, "problem": problem})
        finite = [abs(values[s]) if rule.abs else values[s] for s in steps if not _problem(values.get(s))]
        lo_hi = f"{min(finite):.6g}..{max(finite):.6g}" if finite else "no finite values"
        return _failures_row(rule, failures, f"{'|x| ' if rule.abs else ''}{lo_hi} over {len(steps)} steps")
    # window
    window = steps[:rule.first] if rule.first else steps[-rule.last:] if rule.last else steps
    need = rule.first or rule.last or len(steps)
    if len(window) < need:
        return Row(rule, FAIL, f"{len(window)} steps < window {need}",
                   [{"step": None, "value": None, "problem": f"needs {need} steps"}])
    bad = [{"step": s, "value": None, "problem": _problem(values.get(s))} for s in window if _problem(values.get(s))]
    if bad:
        return _failures_row(rule, bad, "")
    xs = [abs(values[s]) if rule.abs else values[s] for s in window]
    reduced = {"mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}[rule.reduce](xs)
    ok = (rule.lower is None or rule.lower.lower_ok(reduced)) and (rule.upper is None or rule.upper.upper_ok(reduced))
    observed = f"{rule.reduce} = {reduced:.6g} over steps {window[0]}..{window[-1]}"
    return Row(rule, PASS if ok else FAIL, observed, [] if ok else [{"step": None, "value": reduced, "problem": None}])


def _band(rule: Rule, values: dict[int, float], reference: Series | None) -> Row:
    ref = reference.values.get(rule.metric, {}) if reference is not None else {}
    if not ref:
        return Row(rule, UNREFERENCED, "no blessed reference for this metric",
                   detail="`recipe bless RUN_DIR` after a trusted run sets one")
    failures = []
    worst, worst_step = 0.0, None
    for s, r in sorted(ref.items()):
        v = values.get(s)
        problem = _problem(v) or (f"reference {_problem(r)}" if _problem(r) else None)
        if problem:
            failures.append({"step": s, "value": None if _problem(v) else v, "problem": problem})
            continue
        tol = max(rule.rtol * abs(r), rule.atol)
        ratio = abs(v - r) / tol if tol > 0 else (0.0 if v == r else math.inf)
        if ratio > worst or worst_step is None:
            worst, worst_step = ratio, s
        if abs(v - r) > tol:
            failures.append({"step": s, "value": v, "problem": None, "note": f"ref {r:.4g} ± {tol:.2g}"})
    extra = sorted(set(values) - set(ref))
    detail = f"steps {extra[0]}..{extra[-1]} are beyond the reference and not checked" if extra else ""
    row = _failures_row(rule, failures, f"max |x-ref|/tol = {worst:.3g} (step {worst_step})")
    row.detail = detail
    return row


# -- comparing two runs ----------------------------------------------------------------------

def compare_exact(a: Series, b: Series) -> list[str]:
    """Every difference between two series, bit for bit (all NaNs count as one value)."""
    diffs: list[str] = []
    for m in sorted(set(a.values) | set(b.values)):
        if m not in b.values:
            diffs.append(f"{m}: only in the first run")
            continue
        if m not in a.values:
            diffs.append(f"{m}: only in the second run")
            continue
        va, vb = a.values[m], b.values[m]
        for s in sorted(set(va) | set(vb)):
            if s not in vb:
                diffs.append(f"{m} step {s}: only in the first run")
            elif s not in va:
                diffs.append(f"{m} step {s}: only in the second run")
            elif not same_bits(va[s], vb[s]):
                diffs.append(f"{m} step {s}: {va[s].hex()} != {vb[s].hex()} ({va[s]!r} vs {vb[s]!r})")
    return diffs


def compare_bands(a: Series, b: Series, expected: Expected) -> GateResult:
    """The band rules of `expected` on run `a` with run `b` as the reference; a metric b lacks fails."""
    rows = []
    for rule in expected.rules:
        if rule.kind != "band":
            continue
        if not b.values.get(rule.metric):
            rows.append(Row(rule, FAIL, "the reference run has no values",
                            [{"step": None, "value": None, "problem": "missing in reference"}]))
            continue
        rows.append(_band(rule, a.values.get(rule.metric, {}), b))
    return GateResult(rows=rows, expected_path=str(expected.path), series_source=a.source)


# -- output ----------------------------------------------------------------------------------

def format_table(result: GateResult, width: int = 48) -> str:
    """A plain-text table: rule, observed, bound, verdict, why."""
    head = ("rule", "observed", "bound", "verdict", "why")
    rows = [(r.rule.name, r.observed, r.rule.bound_text(), r.verdict.upper(), r.rule.why) for r in result.rows]

    def clip(s: str) -> str:
        return s if len(s) <= width else s[: width - 1] + "…"

    cells = [tuple(clip(c) for c in row[:4]) + (row[4],) for row in [head, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 3)
    verdict = "PASSED" if result.passed else "FAILED"
    counts = ", ".join(f"{v} {k}" for k, v in result.as_dict()["counts"].items())
    lines.append(f"gate {verdict} ({counts}) - {result.expected_path}")
    return "\n".join(lines)


def write_gate_json(result: GateResult, path: str | Path) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(json_safe(result.as_dict()), indent=2, allow_nan=False) + "\n")
    return path


def json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
