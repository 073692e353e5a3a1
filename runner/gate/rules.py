"""The gate's rule kinds, each in one place: its fields and their checks (read from
expected_metrics.toml), its evaluation on a run's series, its one-line bound, and its lines on the
report's plot. The file format is described in runner/gate/expected.py; the verdicts and how a
completion rule blocks the others in runner/gate/evaluate.py.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from runner.errors import UsageError
from runner.gate.metrics import Series
from runner.gate.steps import ExpectedSteps, count

INF = math.inf
REDUCE: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}


class Kind(StrEnum):
    COMPLETION = "completion"
    FINITE = "finite"
    BOUND = "bound"
    BAND = "band"
    RELATIVE = "relative"
    TREND = "trend"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    BLOCKED = "blocked"            # the rule holds but a completion rule failed: it proves nothing
    UNREFERENCED = "unreferenced"  # judged against a reference that is not blessed yet
    NA = "n/a"                     # the run was launched for fewer steps than the rule needs


MAX_LISTED = 5  # failing steps listed per row in gate.json
NOT_DECIDING = (Verdict.PASS, Verdict.UNREFERENCED, Verdict.NA)


@dataclass(frozen=True)
class Limit:
    """One side of a comparison: value, and whether equality passes (ge/le) or not (gt/lt)."""

    value: float
    inclusive: bool

    def lower_ok(self, x: float) -> bool:
        return x >= self.value if self.inclusive else x > self.value

    def upper_ok(self, x: float) -> bool:
        return x <= self.value if self.inclusive else x < self.value


@dataclass
class Row:
    rule: Rule
    verdict: Verdict
    observed: str
    # {"step", "value", "problem" (missing/nan/inf, else None), optional "note"}
    failures: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    provisional: str = ""   # where the rule's evidence is from, while no blessed run confirms it

    def verdict_text(self) -> str:
        return self.verdict.upper() + (" (provisional)" if self.provisional else "")

    def why_text(self) -> str:
        return self.rule.why + (f" (provisional: evidence from {self.provisional})" if self.provisional else "")

    @property
    def name(self) -> str:
        return self.rule.name

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "kind": self.rule.kind, "metric": self.rule.metric,
                "verdict": self.verdict, "observed": self.observed, "bound": self.rule.bound_text(),
                "why": self.rule.why, "detail": self.detail, "failures": self.failures[:MAX_LISTED],
                "failures_total": sum(f.get("count", 1) for f in self.failures),
                **({"provisional": self.provisional} if self.provisional else {})}


# -- reading a [[rule]] table -------------------------------------------------------------------

def short(v: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message: repr, newlines escaped, clipped."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_float(v: Any) -> float | None:
    """A TOML number as a float; None for anything else (a bool, a string, an integer past float's range)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


@dataclass
class Fields:
    """One [[rule]] table being read: each getter checks a field and names it in its error."""

    raw: dict[str, Any]
    path: Path
    label: str

    def err(self, fld: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: rule {self.label}: field '{fld}': {problem}")

    def int(self, fld: str, minimum: int, need: str = "") -> int | None:
        v = self.raw.get(fld)
        if v is None:
            if need:
                raise self.err(fld, need)
            return None
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise self.err(fld, f"expected an integer >= {minimum}, got {short(v)}")
        return v

    def num(self, fld: str) -> float | None:
        v = self.raw.get(fld)
        if v is None:
            return None
        f = as_float(v)
        if f is None or not math.isfinite(f):
            raise self.err(fld, f"expected a finite number, got {short(v)}")
        return f

    def flag(self, fld: str) -> bool:
        v = self.raw.get(fld, False)
        if not isinstance(v, bool):
            raise self.err(fld, f"expected true or false, got {short(v)}")
        return v

    def limits(self) -> tuple[Limit | None, Limit | None]:
        raw = self.raw
        if "gt" in raw and "ge" in raw:
            raise self.err("ge", "give one lower bound (gt or ge), not both")
        if "lt" in raw and "le" in raw:
            raise self.err("le", "give one upper bound (lt or le), not both")
        lower = upper = None
        if "gt" in raw or "ge" in raw:
            fld = "gt" if "gt" in raw else "ge"
            lower = Limit(self.num(fld), inclusive=fld == "ge")  # type: ignore[arg-type]
        if "lt" in raw or "le" in raw:
            fld = "lt" if "lt" in raw else "le"
            upper = Limit(self.num(fld), inclusive=fld == "le")  # type: ignore[arg-type]
        if lower is None and upper is None:
            raise self.err("gt", "no bound: give at least one of gt, ge, lt, le (a rule without one cannot fail)")
        return lower, upper

    def falsifiable(self, lower: Limit | None, upper: Limit | None, domain: tuple[float, float], what: str) -> None:
        """Reject comparisons that every value in `domain` satisfies, or that none does."""
        lo, hi = domain
        lower_can_fail = lower is not None and (lo < lower.value or (lo == lower.value and not lower.inclusive))
        upper_can_fail = upper is not None and (hi > upper.value or (hi == upper.value and not upper.inclusive))
        if not lower_can_fail and not upper_can_fail:
            fld = _field_name(upper, "le", "lt") if upper is not None else _field_name(lower, "ge", "gt")
            raise self.err(fld, f"cannot fail: every value of {what} lies in [{lo:g}, {hi:g}]")
        # Can it pass? The feasible set is [max(lo, L), min(hi, U)] with the limits' strictness.
        a, a_strict = (lo, False) if lower is None or lower.value < lo else (lower.value, not lower.inclusive)
        b, b_strict = (hi, False) if upper is None or upper.value > hi else (upper.value, not upper.inclusive)
        if a > b or (a == b and (a_strict or b_strict)):
            fld = _field_name(lower, "ge", "gt") if lower is not None and lower.value > lo else \
                _field_name(upper, "le", "lt")
            raise self.err(fld, f"cannot pass: no value of {what} in [{lo:g}, {hi:g}] satisfies it")


def _field_name(limit: Limit | None, inclusive: str, strict: str) -> str:
    return inclusive if limit is not None and limit.inclusive else strict


def abs_domain(domain: tuple[float, float]) -> tuple[float, float]:
    lo, hi = domain
    if lo >= 0:
        return lo, hi
    if hi <= 0:
        return -hi, -lo
    return 0.0, max(-lo, hi)


def compared(subject: str, lower: Limit | None, upper: Limit | None) -> str:
    if lower:
        subject = f"{lower.value:g} {'<=' if lower.inclusive else '<'} {subject}"
    if upper:
        subject = f"{subject} {'<=' if upper.inclusive else '<'} {upper.value:g}"
    return subject


# -- judging values ------------------------------------------------------------------------------

def problem(v: float | None) -> str | None:
    if v is None:
        return "missing"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def fmt(v: float | None) -> str:
    return problem(v) or f"{v:.6g}"


def failures_row(rule: Rule, failures: list[dict[str, Any]], observed_ok: str) -> Row:
    if not failures:
        return Row(rule, Verdict.PASS, observed_ok)
    failures = sorted(failures, key=lambda f: (f["step"] is None, f["step"] or 0))

    def where(f: dict[str, Any]) -> str:
        return f"steps {f['step']}..{f['last_step']}" if f.get("last_step") is not None else f"step {f['step']}"

    shown = ", ".join(f"{where(f)}: {f['problem'] or fmt(f['value'])}"
                      + (f" ({f['note']})" if f.get("note") else "") for f in failures[:2])
    rest = sum(f.get("count", 1) for f in failures[2:])
    return Row(rule, Verdict.FAIL, shown + (f" (+{rest} more)" if rest else ""), failures)


def gaps(metric: str, steps: ExpectedSteps, values: dict[int, float], series: Series) -> list[dict[str, Any]]:
    """Failures for expected steps without a number: runs of missing steps, and values that are not numbers."""
    bad = {s: v for (m, s), v in series.nonnumeric.items() if m == metric and s in steps and s not in values}
    out: list[dict[str, Any]] = [{"step": s, "value": None, "problem": f"not a number ({v})"} for s, v in bad.items()]
    for a, b in steps.missing({**values, **bad}):  # type: ignore[dict-item]  # only the keys count
        f: dict[str, Any] = {"step": a, "value": None, "problem": "missing"}
        if b > a:
            f.update(last_step=b, count=count([(a, b)]))
        out.append(f)
    return out


def in_window(gap: dict[str, Any], window: list[int] | set[int]) -> bool:
    return any(gap["step"] <= s <= gap.get("last_step", gap["step"]) for s in window)


def unreferenced(rule: Rule) -> Row:
    return Row(rule, Verdict.UNREFERENCED, "no blessed reference for this metric",
               detail="`recipe bless RUN_DIR` after a trusted run sets one")


def own_steps(metric: str, reference: Series | None, planned: int | None) -> dict[int, float]:
    """The reference's values of `metric` at the steps the run was launched for (all of them for a
    run of unknown length): what a rule judged against the blessed reference compares with."""
    ref = reference.values.get(metric, {}) if reference is not None else {}
    return ref if planned is None else {s: v for s, v in ref.items() if s < planned}


# -- the kinds -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """What every kind has. A kind adds its fields, `read` (their checks), `evaluate`, `bound_text`,
    and where it has a picture, `plot`."""

    name: str
    metric: str
    why: str
    evidence: str            # where the bound comes from
    provisional: str = ""    # set when that evidence is from other models or modes: which

    kind: ClassVar[Kind]
    FIELDS: ClassVar[frozenset[str]] = frozenset()   # the kind's own fields in the file
    referenced: ClassVar[bool] = False               # judged against the blessed reference

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        return cls(**common)

    def bound_text(self) -> str:
        raise NotImplementedError

    def needs(self, planned: int, reference: Series | None) -> str | None:
        """What a run launched for `planned` steps lacks for this rule (it is then n/a); None if nothing."""
        return None

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        raise NotImplementedError

    def plot(self, ax: Any, ref: dict[int, float], color: str, shown: list[float], bounds: list[Any]) -> None:
        """Draw the rule's picture on the metric's axes (nothing for a kind without one). A band adds
        its edges to `shown` (they set the y axis with the data); a bound line goes into `bounds`, drawn
        once the axis is set (runner/gate/report.py), so that a far bound does not flatten the data."""


@dataclass(frozen=True)
class Completion(Rule):
    """step = K: the metric has a value at step K (the run got that far). If one fails, every other
    rule is "blocked". A run launched for fewer steps is complete at its own last step (n/a)."""

    step: int = 0
    kind = Kind.COMPLETION
    FIELDS = frozenset({"step"})

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        need = "a completion rule needs step = K (the step the run must reach)"
        return cls(**common, step=f.int("step", 0, need))  # type: ignore[arg-type]  # never None: need

    def bound_text(self) -> str:
        return f"has step {self.step}"

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        have = series.steps(self.metric)
        last = have[-1] if have else None
        target = self.step if series.planned is None else min(self.step, series.planned - 1)
        if target in series.values.get(self.metric, {}):
            if target < self.step:
                return Row(self, Verdict.NA, f"reached step {last}; run has {target + 1} of {self.step + 1} steps",
                           detail=f"run has {target + 1} of {self.step + 1} steps")
            return Row(self, Verdict.PASS, f"reached step {last}")
        observed = f"last step {last}" if last is not None else "no values"
        failure: dict[str, Any] = {"step": target, "value": None, "problem": "missing"}
        if last is not None and last < target:   # the run stopped early: `recipe check` says where
            failure.update(done=last + 1, of=target + 1)
        return Row(self, Verdict.FAIL, observed, [failure])


@dataclass(frozen=True)
class Finite(Rule):
    """Every expected step has a finite value, on every process that logged it."""

    kind = Kind.FINITE

    def bound_text(self) -> str:
        return "finite every step"

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        values = series.values.get(self.metric, {})
        present = steps.present(values)
        # step -> the process that logged NaN/inf where the kept value (another process's) is finite
        elsewhere: dict[int, str] = {}
        for c in series.conflicts:
            if c["metric"] == self.metric and c["kept"][1] is not None and c["other"][1] is None:
                elsewhere.setdefault(c["step"], c["other"][0])
        failures: list[dict[str, Any]] = [{"step": s, "value": None, "problem": problem(values[s])} for s in present
                                          if problem(values[s])]
        failures += [{"step": s, "value": values[s], "problem": f"NaN/inf on {elsewhere[s]}"} for s in present
                     if s in elsewhere and not problem(values[s])]
        return failures_row(self, failures + gaps(self.metric, steps, values, series),
                            f"{len(steps)}/{len(steps)} finite")


@dataclass(frozen=True)
class Compared(Rule):
    """A kind with a comparison: one lower bound (gt/ge) and/or one upper (lt/le); abs compares |x|."""

    lower: Limit | None = None
    upper: Limit | None = None
    abs: bool = False

    def ok(self, x: float) -> bool:
        if self.abs:
            x = abs(x)
        return (self.lower is None or self.lower.lower_ok(x)) and (self.upper is None or self.upper.upper_ok(x))


@dataclass(frozen=True)
class Bound(Compared):
    """at = "every": each expected step satisfies the comparison; at = "step", step = K: the value at K
    does; at = "window", reduce = mean|median|min|max, first = N or last = N: the reduction does."""

    at: str = "every"
    step: int | None = None
    reduce: str | None = None
    first: int | None = None
    last: int | None = None
    kind = Kind.BOUND
    FIELDS = frozenset({"gt", "ge", "lt", "le", "abs", "at", "step", "reduce", "first", "last"})

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        lower, upper = f.limits()
        use_abs = f.flag("abs")
        at = f.raw.get("at", "every")
        if at not in ("every", "step", "window"):
            raise f.err("at", f"expected 'every', 'step' or 'window', got {short(at)}")
        step, reduce, first, last = f.int("step", 0), f.raw.get("reduce"), f.int("first", 1), f.int("last", 1)
        if at == "step" and step is None:
            raise f.err("step", "at = \"step\" needs step = K")
        if at != "step" and step is not None:
            raise f.err("step", f"only used with at = \"step\" (this rule has at = {at!r})")
        if at == "window":
            if reduce not in REDUCE:
                raise f.err("reduce", f"at = \"window\" needs reduce = one of {', '.join(REDUCE)}; got {short(reduce)}")
            if first is not None and last is not None:
                raise f.err("last", "give first = N or last = N, not both")
        else:
            for fld in ("reduce", "first", "last"):
                if f.raw.get(fld) is not None:
                    raise f.err(fld, f"only used with at = \"window\" (this rule has at = {at!r})")
        f.falsifiable(lower, upper, abs_domain(domain) if use_abs else domain,
                      f"|{common['metric']}|" if use_abs else common["metric"])
        return cls(**common, at=at, step=step, reduce=reduce, first=first, last=last,
                   lower=lower, upper=upper, abs=use_abs)

    def bound_text(self) -> str:
        if self.at == "window":
            span = f"first {self.first}" if self.first else f"last {self.last}" if self.last else "all"
            # abs applies to each value before the reduction
            return compared(f"{self.reduce}({'|x|, ' if self.abs else ''}{span})", self.lower, self.upper)
        subject = f"x[{self.step}]" if self.at == "step" else "x"
        text = compared(f"|{subject}|" if self.abs else subject, self.lower, self.upper)
        return text + " every step" if self.at == "every" else text

    def needs(self, planned: int, reference: Series | None) -> str | None:
        if self.at == "step" and self.step is not None and self.step >= planned:
            return f"needs step {self.step}"
        if self.at == "window" and (self.first or self.last or 0) > planned:
            return f"needs {self.first or self.last} steps"
        return None

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        values = series.values.get(self.metric, {})
        if self.at == "step":
            assert self.step is not None
            v = values.get(self.step)
            what = problem(v)
            if v is None and (self.metric, self.step) in series.nonnumeric:
                what = f"not a number ({series.nonnumeric[(self.metric, self.step)]})"
            ok = what is None and self.ok(v)  # type: ignore[arg-type]
            return Row(self, Verdict.PASS if ok else Verdict.FAIL, f"x[{self.step}] = {what or fmt(v)}",
                       [] if ok else [{"step": self.step, "value": None if what else v, "problem": what}])
        missing, present = gaps(self.metric, steps, values, series), steps.present(values)
        if self.at == "every":
            failures = [{"step": s, "value": None if problem(values[s]) else values[s], "problem": problem(values[s])}
                        for s in present if problem(values[s]) or not self.ok(values[s])]
            finite = [abs(values[s]) if self.abs else values[s] for s in present if not problem(values[s])]
            lo_hi = f"{min(finite):.6g}..{max(finite):.6g}" if finite else "no finite values"
            return failures_row(self, failures + missing,
                                f"{'|x| ' if self.abs else ''}{lo_hi} over {len(steps)} steps")
        need = self.first or self.last or len(steps)
        if len(steps) < need:
            return Row(self, Verdict.FAIL, f"{len(steps)} steps < window {need}",
                       [{"step": None, "value": None, "problem": f"needs {need} steps"}])
        if self.first or self.last:
            window = steps.head(self.first) if self.first else steps.tail(self.last)  # type: ignore[arg-type]
            bad = [g for g in missing if in_window(g, window)]
        else:
            window, bad = present, missing   # all expected steps: every gap is inside the window
        bad += [{"step": s, "value": None, "problem": problem(values[s])} for s in window
                if s in values and problem(values[s])]
        if bad:
            return failures_row(self, bad, "")
        reduced = REDUCE[self.reduce]([abs(values[s]) if self.abs else values[s] for s in window])  # type: ignore[index]
        ok = self.ok(reduced)   # with abs, the values were |x| already, so reduced >= 0
        return Row(self, Verdict.PASS if ok else Verdict.FAIL,
                   f"{self.reduce} = {reduced:.6g} over steps {window[0]}..{window[-1]}",
                   [] if ok else [{"step": None, "value": reduced, "problem": None}])

    def plot(self, ax: Any, ref: dict[int, float], color: str, shown: list[float], bounds: list[Any]) -> None:
        span = (self.step - 0.4, self.step + 0.4) if self.at == "step" and self.step is not None else None
        for limit, style in ((self.lower, ":"), (self.upper, "--")):
            if limit is None:
                continue
            # a bound on |x| is drawn at +L and -L
            for y in sorted({limit.value, -limit.value}) if self.abs else [limit.value]:
                bounds.append((y, span, color, style, f"{self.name}: {self.bound_text()}"))


@dataclass(frozen=True)
class Trend(Compared):
    """window = N: delta = mean(last N) - mean(first N), compared with the bounds."""

    window: int = 1
    kind = Kind.TREND
    FIELDS = frozenset({"gt", "ge", "lt", "le", "abs", "window"})

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        lower, upper = f.limits()
        use_abs = f.flag("abs")
        window = f.int("window", 1, "a trend rule needs window = N (mean of the last N vs the first N)")
        span = domain[1] - domain[0]
        change = (-span, span) if math.isfinite(span) else (-INF, INF)
        f.falsifiable(lower, upper, abs_domain(change) if use_abs else change,
                      f"the change of {'|' + common['metric'] + '|' if use_abs else common['metric']}")
        return cls(**common, window=window, lower=lower, upper=upper, abs=use_abs)  # type: ignore[arg-type]

    def bound_text(self) -> str:
        subject = f"mean(last {self.window})-mean(first {self.window})"
        return compared(f"|{subject}|" if self.abs else subject, self.lower, self.upper)

    def needs(self, planned: int, reference: Series | None) -> str | None:
        # head and tail windows overlapping compare a step with itself
        return f"needs {2 * self.window} steps" if planned < 2 * self.window else None

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        values, n = series.values.get(self.metric, {}), self.window
        if len(steps) < n:
            return Row(self, Verdict.FAIL, f"{len(steps)} steps < window {n}",
                       [{"step": None, "value": None, "problem": f"needs {n} steps"}])
        head, tail = steps.head(n), steps.tail(n)
        window = set(head + tail)
        bad = [g for g in gaps(self.metric, steps, values, series) if in_window(g, window)]
        bad += [{"step": s, "value": None, "problem": problem(values[s])} for s in sorted(window)
                if s in values and problem(values[s])]
        if bad:
            return failures_row(self, bad, "")
        delta = statistics.fmean(values[s] for s in tail) - statistics.fmean(values[s] for s in head)
        ok = self.ok(delta)
        return Row(self, Verdict.PASS if ok else Verdict.FAIL, f"delta = {delta:+.6g}",
                   [] if ok else [{"step": None, "value": delta, "problem": None}])


@dataclass(frozen=True)
class Band(Rule):
    """rtol, atol: per step of the blessed reference, |x - ref| <= max(rtol * |ref|, atol)."""

    rtol: float = 0.0
    atol: float = 0.0
    kind = Kind.BAND
    FIELDS = frozenset({"rtol", "atol"})
    referenced = True

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        rtol, atol = f.num("rtol"), f.num("atol")
        for fld, v in (("rtol", rtol), ("atol", atol)):
            if v is None:
                raise f.err(fld, "a band rule needs both rtol and atol (use 0 for none)")
            if v < 0:
                raise f.err(fld, f"must be >= 0, got {v:g}")
        lo, hi = domain
        if math.isfinite(hi - lo) and atol >= hi - lo:  # type: ignore[operator]
            raise f.err("atol", f"{atol:g} covers the whole range [{lo:g}, {hi:g}] of {common['metric']}: "
                        "the band cannot fail")
        return cls(**common, rtol=rtol, atol=atol)  # type: ignore[arg-type]

    def tol(self, r: float) -> float:
        return max(self.rtol * abs(r), self.atol)

    def bound_text(self) -> str:
        return f"|x-ref| <= max({self.rtol:g}*|ref|, {self.atol:g})"

    def needs(self, planned: int, reference: Series | None) -> str | None:
        ref = reference.values.get(self.metric) if reference is not None else None
        return f"needs step {min(ref)}" if ref and min(ref) >= planned else None

    def out_at(self, x: float, r: float) -> bool:
        """Step by step: is x outside the band around r? (`recipe diff`'s first step out.)"""
        return abs(x - r) > self.tol(r)

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        return self.judge(series.values.get(self.metric, {}), reference, series.planned)

    def judge(self, values: dict[int, float], reference: Series | None, planned: int | None) -> Row:
        ref = own_steps(self.metric, reference, planned)
        if not ref:
            return unreferenced(self)
        failures = []
        worst, worst_step = 0.0, None
        for s, r in sorted(ref.items()):
            v = values.get(s)
            bad = problem(v) or (f"reference {problem(r)}" if problem(r) else None)
            if bad:
                failures.append({"step": s, "value": None if problem(v) else v, "problem": bad})
                continue
            assert v is not None
            tol = self.tol(r)
            ratio = abs(v - r) / tol if tol > 0 else (0.0 if v == r else math.inf)
            if ratio > worst or worst_step is None:
                worst, worst_step = ratio, s
            if abs(v - r) > tol:
                failures.append({"step": s, "value": v, "problem": None, "note": f"ref {r:.4g} ± {tol:.2g}"})
        extra = sorted(set(values) - set(ref))
        row = failures_row(self, failures, f"max |x-ref|/tol = {worst:.3g} (step {worst_step})")
        row.detail = f"steps {extra[0]}..{extra[-1]} are beyond the reference and not checked" if extra else ""
        return row

    def plot(self, ax: Any, ref: dict[int, float], color: str, shown: list[float], bounds: list[Any]) -> None:
        rs = sorted(s for s, v in ref.items() if math.isfinite(v))
        lo, hi = [ref[s] - self.tol(ref[s]) for s in rs], [ref[s] + self.tol(ref[s]) for s in rs]
        ax.fill_between(rs, lo, hi, color="#8c959f", alpha=0.25, label=f"band: {self.name}", zorder=1)
        shown += [*lo, *hi]
        ax.plot(rs, [ref[s] for s in rs], "--", color="#57606a", lw=1, label="reference", zorder=2)


@dataclass(frozen=True)
class Relative(Compared):
    """reduce(x) / reduce(ref) over the reference's steps >= from_step, against the bounds: a
    one-sided band for speed (step time `le = 1.25`, throughput `ge = 0.8`). A reduction, not step by
    step: one slow step (a checkpoint save) moves a median little, a slower image moves it all."""

    reduce: str = "median"
    from_step: int = 0
    kind = Kind.RELATIVE
    FIELDS = frozenset({"gt", "ge", "lt", "le", "reduce", "from_step"})
    referenced = True

    @classmethod
    def read(cls, f: Fields, common: dict[str, Any], domain: tuple[float, float]) -> Rule:
        reduce = f.raw.get("reduce", "median")
        if reduce not in REDUCE:
            raise f.err("reduce", f"expected one of {', '.join(REDUCE)}; got {short(reduce)}")
        lower, upper = f.limits()
        # a ratio of two values of a non-negative metric is non-negative; otherwise it can be anything
        f.falsifiable(lower, upper, (0.0, INF) if domain[0] >= 0 else (-INF, INF), common["metric"])
        return cls(**common, reduce=reduce, from_step=f.int("from_step", 0) or 0, lower=lower, upper=upper)

    def bound_text(self) -> str:
        steps = f"steps >= {self.from_step}" if self.from_step else "all steps"
        return compared(f"{self.reduce}(x)/{self.reduce}(ref) over {steps}", self.lower, self.upper)

    def needs(self, planned: int, reference: Series | None) -> str | None:
        has_ref = reference is not None and reference.values.get(self.metric)
        return f"needs step {self.from_step}" if has_ref and self.from_step >= planned else None

    def out_at(self, x: float, r: float) -> bool:
        """Step by step: is x / r outside the bounds? (`recipe diff`'s first step out.)"""
        return not self.ok(x / r if r else (1.0 if x == 0 else math.inf))

    def evaluate(self, series: Series, steps: ExpectedSteps, reference: Series | None) -> Row:
        return self.judge(series.values.get(self.metric, {}), reference, series.planned)

    def judge(self, values: dict[int, float], reference: Series | None, planned: int | None) -> Row:
        ref = own_steps(self.metric, reference, planned)
        if not ref:
            return unreferenced(self)
        steps = [s for s in sorted(ref) if s >= self.from_step]
        if not steps:
            return Row(self, Verdict.FAIL, f"the reference has no step >= {self.from_step}",
                       [{"step": None, "value": None, "problem": "missing in reference"}])
        bad = [{"step": s, "value": None if problem(values.get(s)) else values[s],
                "problem": problem(values.get(s)) or f"reference {problem(ref[s])}"}
               for s in steps if problem(values.get(s)) or problem(ref[s])]
        if bad:
            return failures_row(self, bad, "")
        a, b = REDUCE[self.reduce]([values[s] for s in steps]), REDUCE[self.reduce]([ref[s] for s in steps])
        span = f"steps {steps[0]}..{steps[-1]}"
        if b == 0:
            return Row(self, Verdict.FAIL, f"{self.reduce}(ref) is 0 over {span}: no ratio",
                       [{"step": None, "value": None, "problem": "reference is 0"}])
        ratio = a / b
        observed = f"{self.reduce} {a:.4g} = {ratio:.3f}x ref {b:.4g} ({span})"
        if self.ok(ratio):
            return Row(self, Verdict.PASS, observed)
        # the steps that on their own are outside the bound, to mark them on the report's plot
        outside = [{"step": s, "value": values[s], "problem": None, "note": f"{values[s] / ref[s]:.2f}x ref"}
                   for s in steps if ref[s] != 0 and not self.ok(values[s] / ref[s])]
        return Row(self, Verdict.FAIL, observed, [{"step": None, "value": ratio, "problem": None}] + outside)

    def plot(self, ax: Any, ref: dict[int, float], color: str, shown: list[float], bounds: list[Any]) -> None:
        # the per-step picture of a rule on a reduction: ref x each bound, shaded between them
        rs = sorted(s for s, v in ref.items() if math.isfinite(v) and s >= self.from_step)
        lo = [ref[s] * (self.lower.value if self.lower else 1.0) for s in rs]
        hi = [ref[s] * (self.upper.value if self.upper else 1.0) for s in rs]
        ax.fill_between(rs, lo, hi, color="#8c959f", alpha=0.25, zorder=1, label=f"{self.name}: {self.bound_text()}")
        shown += [*lo, *hi]
        ax.plot(rs, [ref[s] for s in rs], "--", color="#57606a", lw=1, label="reference", zorder=2)


KINDS: dict[Kind, type[Rule]] = {cls.kind: cls for cls in (Completion, Finite, Bound, Band, Relative, Trend)}
