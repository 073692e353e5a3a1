"""The expected-metrics gate: evaluate a recipe's rules on a run's series, and compare two runs.

    series = metrics.collect(run_dir)                      # runner/gate/metrics.py
    result = evaluate(load_expected(path), series)         # bands use the blessed reference, if any
    result.passed, result.rows, result.as_dict()
    compare_exact(a, b)            -> ["train/loss step 3: 0x1.2p-3 != 0x1.3p-3", ...]  (bit for bit)
    compare_bands(a, b, expected)  -> GateResult of the band rules with b as the reference

Verdicts: pass, fail, blocked (the rule holds but a completion rule failed, so it proves
nothing), unreferenced (a band or relative rule with no blessed reference; does not decide the gate),
n/a (the run was launched for fewer steps than the rule needs: a shortened run, `--num-rollout 3`,
is judged on its own steps, and a rule that cannot be judged on them says so; never a pass).
The run's own length is Series.planned (run.json/plan.json's num_rollout); a completion rule's
`step = K` is then reached at min(K, planned - 1), as the recipes count one step per rollout.
A missing value, NaN or inf fails the rule it touches; so does a value that is not a number, and,
for a finite rule, a NaN/inf that another process logged for the same step. Notes list what no rule
touches but a reader must know (runner/gate/metrics.py Series.anomalies). The rule model is
runner/gate/expected.py; expected steps are runner/gate/steps.py.
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
from runner.gate.steps import ExpectedSteps, count

PASS, FAIL, BLOCKED, UNREFERENCED, NA = "pass", "fail", "blocked", "unreferenced", "n/a"
DECIDING = (FAIL, BLOCKED)   # the verdicts that fail the gate
MAX_LISTED = 5  # failing steps listed per row
MAX_NOTES = 10  # anomaly notes printed under the table
REDUCE = {"mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}


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
                "failures_total": sum(f.get("count", 1) for f in self.failures)}


@dataclass
class GateResult:
    rows: list[Row]
    expected_path: str = ""
    reference: dict[str, Any] | None = None    # the reference's provenance, if bands used one
    series_source: str = ""
    notes: list[str] = field(default_factory=list)  # anomalies of the series (see the module docstring)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.verdict in (PASS, UNREFERENCED, NA) for r in self.rows)

    def failed_rows(self) -> list[Row]:
        return [r for r in self.rows if r.verdict not in (PASS, UNREFERENCED, NA)]

    def stopped(self) -> tuple[int, int] | None:
        """(steps done, steps planned) of a run that stopped before its own last step: a completion
        rule failed on a run that has values. None for a complete run."""
        short = [r for r in self.rows if r.rule.kind == "completion" and r.verdict == FAIL and "of" in r.failures[0]]
        if not short:
            return None
        f = min(short, key=lambda r: r.failures[0]["done"]).failures[0]
        return f["done"], f["of"]

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return {"status": "passed" if self.passed else "failed", "passed": self.passed, "counts": counts,
                "expected": self.expected_path, "reference": self.reference, "series_source": self.series_source,
                "notes": self.notes, "rows": [r.as_dict() for r in self.rows]}


# -- evaluation ------------------------------------------------------------------------------

_AUTO = object()


def evaluate(expected: Expected, series: Series, reference: Series | None | object = _AUTO) -> GateResult:
    """Every rule of `expected` on `series`. Bands use `reference`, by default the blessed one."""
    if reference is _AUTO:
        reference = load_reference(expected.path)
    completion = [_completion(r, series) for r in expected.rules if r.kind == "completion"]
    complete = all(row.verdict in (PASS, NA) for row in completion)
    rows: list[Row] = []
    done = iter(completion)
    for rule in expected.rules:
        if rule.kind == "completion":
            rows.append(next(done))
            continue
        short = _shortened(rule, expected, series)
        row = _not_applicable(rule, expected, series, reference, short) if short else None
        row = row or _evaluate_rule(rule, expected, series, reference)  # type: ignore[arg-type]
        if not complete and row.verdict == PASS:
            row.verdict = BLOCKED
            row.detail = "a completion rule failed: a partial run proves nothing"
        rows.append(row)
    return GateResult(rows=rows, expected_path=str(expected.path), series_source=series.source,
                      reference=(reference.extra.get("provenance") or {}) if isinstance(reference, Series) else None,
                      notes=series.anomalies(expected.metrics()))


def expected_steps(metric: str, expected: Expected, series: Series) -> ExpectedSteps:
    """Steps the metric must have: all its step key reached, plus 0..K of completion rules on that key."""
    key = step_key_for(metric)
    upto = max((c.step for c in expected.completion_rules() if step_key_for(c.metric) == key), default=-1)
    if series.planned is not None:
        upto = min(upto, series.planned - 1)
    return ExpectedSteps(tuple(series.key_steps(key)), upto)


def _shortened(rule: Rule, expected: Expected, series: Series) -> tuple[int, int] | None:
    """(planned, full) when the run was launched for fewer steps than the recipe's completion rules
    on the rule's step key ask for; None for a run of full length (judged as it always was)."""
    key = step_key_for(rule.metric)
    full = 1 + max((c.step for c in expected.completion_rules() if step_key_for(c.metric) == key), default=-1)
    return (series.planned, full) if series.planned is not None and series.planned < full else None


def _not_applicable(rule: Rule, expected: Expected, series: Series, reference: Series | None,
                    short: tuple[int, int]) -> Row | None:
    """An n/a row for a rule that needs steps a shortened run was never launched for, else None."""
    planned, full = short
    why = f"run has {planned} of {full} steps"
    need = None
    if rule.kind == "bound" and rule.at == "step" and rule.step >= planned:
        need = f"needs step {rule.step}"
    elif rule.kind == "trend" and planned < 2 * rule.window:
        need = f"needs {2 * rule.window} steps"   # head and tail windows overlapping compare a step with itself
    elif rule.kind == "bound" and rule.at == "window" and (rule.first or rule.last or 0) > planned:
        need = f"needs {rule.first or rule.last} steps"
    elif rule.kind in ("band", "relative") and isinstance(reference, Series) and reference.values.get(rule.metric):
        first = rule.from_step if rule.kind == "relative" else min(reference.values[rule.metric])
        if first >= planned:
            need = f"needs step {first}"
    return Row(rule, NA, f"{need}, run has {planned}", detail=why) if need else None


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
    """Reached step K; a run launched for fewer steps is complete at its own last step (n/a: the
    rule's K was never asked of it)."""
    steps = series.steps(rule.metric)
    last = steps[-1] if steps else None
    target = rule.step if series.planned is None else min(rule.step, series.planned - 1)
    if target in series.values.get(rule.metric, {}):
        if target < rule.step:
            return Row(rule, NA, f"reached step {last}; run has {target + 1} of {rule.step + 1} steps",
                       detail=f"run has {target + 1} of {rule.step + 1} steps")
        return Row(rule, PASS, f"reached step {last}")
    observed = f"last step {last}" if last is not None else "no values"
    failure = {"step": target, "value": None, "problem": "missing"}
    if last is not None and last < target:   # the run stopped early: `recipe check` says where
        failure.update(done=last + 1, of=target + 1)
    return Row(rule, FAIL, observed, [failure])


def _compare(rule: Rule, x: float) -> bool:
    if rule.abs:
        x = abs(x)
    return (rule.lower is None or rule.lower.lower_ok(x)) and (rule.upper is None or rule.upper.upper_ok(x))


def _failures_row(rule: Rule, failures: list[dict[str, Any]], observed_ok: str) -> Row:
    if not failures:
        return Row(rule, PASS, observed_ok)
    failures = sorted(failures, key=lambda f: (f["step"] is None, f["step"] or 0))

    def where(f: dict[str, Any]) -> str:
        return f"steps {f['step']}..{f['last_step']}" if f.get("last_step") is not None else f"step {f['step']}"

    shown = ", ".join(f"{where(f)}: {f['problem'] or _fmt(f['value'])}"
                      + (f" ({f['note']})" if f.get("note") else "") for f in failures[:2])
    rest = sum(f.get("count", 1) for f in failures[2:])
    more = f" (+{rest} more)" if rest else ""
    return Row(rule, FAIL, shown + more, failures)


def _gaps(rule: Rule, steps: ExpectedSteps, values: dict[int, float], series: Series) -> list[dict[str, Any]]:
    """Failures for expected steps without a number: runs of missing steps, and values that are not numbers."""
    bad = {s: v for (m, s), v in series.nonnumeric.items() if m == rule.metric and s in steps and s not in values}
    out: list[dict[str, Any]] = [{"step": s, "value": None, "problem": f"not a number ({v})"} for s, v in bad.items()]
    for a, b in steps.missing({**values, **bad}):
        f: dict[str, Any] = {"step": a, "value": None, "problem": "missing"}
        if b > a:
            f.update(last_step=b, count=count([(a, b)]))
        out.append(f)
    return out


def _nonfinite_elsewhere(series: Series, metric: str) -> dict[int, str]:
    """step -> the process that logged NaN/inf for `metric` where the kept value (another process's) is finite."""
    out: dict[int, str] = {}
    for c in series.conflicts:
        if c["metric"] == metric and c["kept"][1] is not None and c["other"][1] is None:
            out.setdefault(c["step"], c["other"][0])
    return out


def _evaluate_rule(rule: Rule, expected: Expected, series: Series, reference: Series | None) -> Row:
    values = series.values.get(rule.metric, {})
    if rule.kind == "band":
        return _band(rule, values, reference, series.planned)
    if rule.kind == "relative":
        return _relative(rule, values, reference, series.planned)
    steps = expected_steps(rule.metric, expected, series)
    if not steps:
        return Row(rule, FAIL, "no values", [{"step": None, "value": None, "problem": "missing"}])
    gaps = _gaps(rule, steps, values, series)
    present = steps.present(values)

    if rule.kind == "finite":
        elsewhere = _nonfinite_elsewhere(series, rule.metric)
        failures = [{"step": s, "value": None, "problem": _problem(values[s])} for s in present
                    if _problem(values[s])]
        failures += [{"step": s, "value": values[s], "problem": f"NaN/inf on {elsewhere[s]}"} for s in present
                     if s in elsewhere and not _problem(values[s])]
        return _failures_row(rule, failures + gaps, f"{len(steps)}/{len(steps)} finite")

    if rule.kind == "trend":
        n = rule.window
        if len(steps) < n:
            return Row(rule, FAIL, f"{len(steps)} steps < window {n}",
                       [{"step": None, "value": None, "problem": f"needs {n} steps"}])
        head, tail = steps.head(n), steps.tail(n)
        window = set(head + tail)
        bad = [f for f in gaps if f["step"] in window or (f.get("last_step") is not None
                                                          and any(f["step"] <= s <= f["last_step"] for s in window))]
        bad += [{"step": s, "value": None, "problem": _problem(values[s])} for s in sorted(window)
                if s in values and _problem(values[s])]
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
        if v is None and (rule.metric, rule.step) in series.nonnumeric:
            problem = f"not a number ({series.nonnumeric[(rule.metric, rule.step)]})"
        ok = problem is None and _compare(rule, v)
        observed = f"x[{rule.step}] = {problem or _fmt(v)}"
        return Row(rule, PASS if ok else FAIL, observed,
                   [] if ok else [{"step": rule.step, "value": None if problem else v, "problem": problem}])
    if rule.at == "every":
        failures = []
        for s in present:
            v = values[s]
            problem = _problem(v)
            if problem or not _compare(rule, v):
                failures.append({"step": s, "value": None if problem else v, "problem": problem})
        finite = [abs(values[s]) if rule.abs else values[s] for s in present if not _problem(values[s])]
        lo_hi = f"{min(finite):.6g}..{max(finite):.6g}" if finite else "no finite values"
        return _failures_row(rule, failures + gaps, f"{'|x| ' if rule.abs else ''}{lo_hi} over {len(steps)} steps")
    # window
    need = rule.first or rule.last or len(steps)
    if len(steps) < need:
        return Row(rule, FAIL, f"{len(steps)} steps < window {need}",
                   [{"step": None, "value": None, "problem": f"needs {need} steps"}])
    if rule.first or rule.last:
        window = steps.head(rule.first) if rule.first else steps.tail(rule.last)
        bad = [f for f in gaps if any(f["step"] <= s <= f.get("last_step", f["step"]) for s in window)]
    else:
        window, bad = present, gaps   # all expected steps: every gap is inside the window
    bad = bad + [{"step": s, "value": None, "problem": _problem(values[s])} for s in window
                 if s in values and _problem(values[s])]
    if bad:
        return _failures_row(rule, bad, "")
    xs = [abs(values[s]) if rule.abs else values[s] for s in window]
    reduced = REDUCE[rule.reduce](xs)
    ok = (rule.lower is None or rule.lower.lower_ok(reduced)) and (rule.upper is None or rule.upper.upper_ok(reduced))
    observed = f"{rule.reduce} = {reduced:.6g} over steps {window[0]}..{window[-1]}"
    return Row(rule, PASS if ok else FAIL, observed, [] if ok else [{"step": None, "value": reduced, "problem": None}])


def _own_steps(ref: dict[int, float], planned: int | None) -> dict[int, float]:
    """The reference's steps the run was launched for (all of them for a run of unknown length)."""
    return ref if planned is None else {s: v for s, v in ref.items() if s < planned}


def _relative(rule: Rule, values: dict[int, float], reference: Series | None, planned: int | None = None) -> Row:
    """reduce(x) / reduce(ref) over the reference's steps >= from_step, against the rule's bounds."""
    ref = reference.values.get(rule.metric, {}) if reference is not None else {}
    ref = _own_steps(ref, planned) if ref else ref
    if not ref:
        return Row(rule, UNREFERENCED, "no blessed reference for this metric",
                   detail="`recipe bless RUN_DIR` after a trusted run sets one")
    steps = [s for s in sorted(ref) if s >= rule.from_step]
    if not steps:
        return Row(rule, FAIL, f"the reference has no step >= {rule.from_step}",
                   [{"step": None, "value": None, "problem": "missing in reference"}])
    bad = [{"step": s, "value": None if _problem(values.get(s)) else values[s],
            "problem": _problem(values.get(s)) or f"reference {_problem(ref[s])}"}
           for s in steps if _problem(values.get(s)) or _problem(ref[s])]
    if bad:
        return _failures_row(rule, bad, "")
    a, b = REDUCE[rule.reduce]([values[s] for s in steps]), REDUCE[rule.reduce]([ref[s] for s in steps])
    span = f"steps {steps[0]}..{steps[-1]}"
    if b == 0:
        return Row(rule, FAIL, f"{rule.reduce}(ref) is 0 over {span}: no ratio",
                   [{"step": None, "value": None, "problem": "reference is 0"}])
    ratio = a / b
    observed = f"{rule.reduce} {a:.4g} = {ratio:.3f}x ref {b:.4g} ({span})"
    if _compare(rule, ratio):
        return Row(rule, PASS, observed)
    # the steps that on their own are outside the bound, to mark them on the report's plot
    outside = [{"step": s, "value": values[s], "problem": None, "note": f"{values[s] / ref[s]:.2f}x ref"}
               for s in steps if ref[s] != 0 and not _compare(rule, values[s] / ref[s])]
    return Row(rule, FAIL, observed, [{"step": None, "value": ratio, "problem": None}] + outside)


def _band(rule: Rule, values: dict[int, float], reference: Series | None, planned: int | None = None) -> Row:
    ref = reference.values.get(rule.metric, {}) if reference is not None else {}
    ref = _own_steps(ref, planned) if ref else ref
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

def format_table(result: GateResult, columns: int | None = None) -> str:
    """The rows (rule, observed, bound, verdict, why) as console.table fits them to `columns` (default:
    the terminal's width, COLUMNS, or 100 on a pipe), then the verdict and notes. Every text goes through
    console.safe: notes quote metric names and values from the events."""
    from runner.console import safe, table, wrap
    from runner.console import width as console_width

    columns = columns or console_width()
    rows = [(r.rule.name, r.observed, r.rule.bound_text(), r.verdict.upper(), r.rule.why) for r in result.rows]
    lines = table(("rule", "observed", "bound", "verdict", "why"), rows, columns,
                  no_wrap=("rule", "verdict")).splitlines()
    verdict = "PASSED" if result.passed else "FAILED"
    counts = ", ".join(f"{v} {k}" for k, v in result.as_dict()["counts"].items())
    lines += wrap(safe(f"gate {verdict} ({counts}) - {result.expected_path}"), columns, indent=2)
    na = [r for r in result.rows if r.verdict == NA]
    if na:
        lines += wrap(safe(f"n/a: {len(na)} rule(s) could not apply, {na[0].detail}: "
                           + ", ".join(r.name for r in na)), columns, indent=2)
    for n in result.notes[:MAX_NOTES]:
        lines += wrap(safe(f"note: {n}"), columns, indent=6)
    if len(result.notes) > MAX_NOTES:
        lines.append(f"note: ... and {len(result.notes) - MAX_NOTES} more (gate.json lists them all)")
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
