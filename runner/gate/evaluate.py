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
touches but a reader must know (runner/gate/metrics.py Series.anomalies). The rule kinds are
runner/gate/rules.py; expected steps are runner/gate/steps.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.atomicfile import write_text_atomic
from runner.gate.expected import Expected, load_expected  # noqa: F401  (re-exported for callers)
from runner.gate.metrics import Series, same_bits, step_key_for
from runner.gate.reference import load_reference
from runner.gate.rules import NOT_DECIDING, Band, Completion, Row, Rule, Verdict
from runner.gate.steps import ExpectedSteps

PASS, FAIL, BLOCKED, UNREFERENCED, NA = Verdict  # the verdicts, for callers' brevity
MAX_NOTES = 10  # anomaly notes printed under the table
WHY_BESIDE = 120  # columns from which each rule's why has a column of its own


@dataclass
class GateResult:
    rows: list[Row]
    expected_path: str = ""
    reference: dict[str, Any] | None = None    # the reference's provenance, if bands used one
    series_source: str = ""
    notes: list[str] = field(default_factory=list)  # anomalies of the series (see the module docstring)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.verdict in NOT_DECIDING for r in self.rows)

    def failed_rows(self) -> list[Row]:
        return [r for r in self.rows if r.verdict not in NOT_DECIDING]

    def stopped(self) -> tuple[int, int] | None:
        """(steps done, steps planned) of a run that stopped before its own last step: a completion
        rule failed on a run that has values. None for a complete run."""
        short = [r for r in self.rows
                 if isinstance(r.rule, Completion) and r.verdict == FAIL and "of" in r.failures[0]]
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
    ref: Series | None = load_reference(expected.path) if reference is _AUTO else reference  # type: ignore[assignment]
    completion = {r.name: judge(r, expected, series, ref) for r in expected.completion_rules()}
    complete = all(row.verdict in (PASS, NA) for row in completion.values())
    rows: list[Row] = []
    for rule in expected.rules:
        if isinstance(rule, Completion):
            rows.append(completion[rule.name])
            continue
        row = judge(rule, expected, series, ref)
        if not complete and row.verdict == PASS:
            row.verdict = BLOCKED
            row.detail = "a completion rule failed: a partial run proves nothing"
        rows.append(row)
    for row in rows:
        if row.rule.provisional and not confirmed(row.rule, expected, ref):
            row.provisional = row.rule.provisional
    return GateResult(rows=rows, expected_path=str(expected.path), series_source=series.source,
                      reference=(ref.extra.get("provenance") or {}) if ref is not None else None,
                      notes=series.anomalies(expected.metrics()))


def judge(rule: Rule, expected: Expected, series: Series, reference: Series | None) -> Row:
    """One rule's row: n/a where a run launched for fewer steps than the recipe's completion rules ask
    lacks the steps this rule needs, else its kind's verdict."""
    planned, full = series.planned, 1 + _last_step(expected, step_key_for(rule.metric))
    need = rule.needs(planned, reference) if planned is not None and planned < full else None
    if need:
        return Row(rule, NA, f"{need}, run has {planned}", detail=f"run has {planned} of {full} steps")
    steps = expected_steps(rule.metric, expected, series)
    if not steps and not rule.referenced and not isinstance(rule, Completion):
        return Row(rule, FAIL, "no values", [{"step": None, "value": None, "problem": "missing"}])
    return rule.evaluate(series, steps, reference)


def confirmed(rule: Rule, expected: Expected, reference: Series | None) -> bool:
    """A blessed run of this recipe passes the rule: its evidence is no longer only from elsewhere.
    A band or relative rule is judged against that run itself, so it cannot confirm one."""
    return reference is not None and not rule.referenced and judge(rule, expected, reference, None).verdict == PASS


def expected_steps(metric: str, expected: Expected, series: Series) -> ExpectedSteps:
    """Steps the metric must have: all its step key reached, plus 0..K of completion rules on that key."""
    key = step_key_for(metric)
    upto = _last_step(expected, key)
    if series.planned is not None:
        upto = min(upto, series.planned - 1)
    return ExpectedSteps(tuple(series.key_steps(key)), upto)


def _last_step(expected: Expected, key: str) -> int:
    """The last step the completion rules on step key `key` ask for (-1: none)."""
    return max((c.step for c in expected.completion_rules() if step_key_for(c.metric) == key), default=-1)


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
        if not isinstance(rule, Band):
            continue
        if not b.values.get(rule.metric):
            rows.append(Row(rule, FAIL, "the reference run has no values",
                            [{"step": None, "value": None, "problem": "missing in reference"}]))
            continue
        rows.append(rule.judge(a.values.get(rule.metric, {}), b, None))
    return GateResult(rows=rows, expected_path=str(expected.path), series_source=a.source)


# -- output ----------------------------------------------------------------------------------

def format_table(result: GateResult, columns: int | None = None) -> str:
    """The rows (rule, observed, bound, verdict, why) as console.table fits them to `columns` (default:
    the terminal's width, COLUMNS, or 100 on a pipe), then the verdict and notes. Every text goes through
    console.safe: notes quote metric names and values from the events."""
    from runner.console import safe, table, wrap
    from runner.console import width as console_width

    columns = columns or console_width()
    rows = [(r.rule.name, r.observed, r.rule.bound_text(), r.verdict_text(), r.why_text()) for r in result.rows]
    if columns >= WHY_BESIDE:
        lines = table(("rule", "observed", "bound", "verdict", "why"), rows, columns,
                      no_wrap=("rule", "verdict")).splitlines()
    else:
        # Too narrow for a why column (it would be a dozen letters wide): the why goes under its row,
        # and only where it matters, a rule that did not plainly pass.
        shown = table(("rule", "observed", "bound", "verdict"), [r[:4] for r in rows], columns,
                      no_wrap=("rule", "verdict")).splitlines()
        lines, n = shown[:1], -1
        for line in [*shown[1:], None]:
            if (line is None or not line[:1].isspace()) and n >= 0:
                r = result.rows[n]
                if r.verdict != Verdict.PASS or r.provisional:
                    why = wrap(safe(f"why: {r.why_text()}"), columns - 4, indent=4)
                    lines += ["    " + why[0], *why[1:]]
            if line is not None:
                n += 0 if line[:1].isspace() else 1
                lines.append(line)
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
