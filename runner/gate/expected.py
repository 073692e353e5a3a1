"""The expected-metrics file: what a healthy run looks like, as typed rules that can fail.

Each recipe versions one beside its recipe.toml: `recipes/<name>/expected_metrics.toml`.
`recipe check` evaluates it against a run's metrics (runner/gate/evaluate.py); nothing in it is eval'd.

Format (schema 1)
-----------------
    schema = 1

    # Optional: start from another file's rules (a path relative to this file), e.g. the rules
    # shared by the recipes of one framework. A [[rule]] here with the name of one of its rules
    # replaces that rule whole, in its place; other rules here are added after them; `drop`
    # removes rules by name. Its [domains] apply here too, and may be narrowed again.
    extends = "../lib/miles_grpo_expected.toml"
    drop = ["rule_name"]

    # Optional. Narrows the value range a metric can take; used only to reject, at load time,
    # rules that could never fail (or never pass). Built-in ranges (KNOWN_DOMAINS) cover the
    # miles metrics; an entry here may only narrow them, never widen them.
    [domains]
    "rollout/raw_reward" = [0.0, 1.0]

    [[rule]]
    name = "logprob_diff_every_step"   # unique within the file; letters, digits, _ . -
    kind = "bound"                     # completion | finite | bound | band | relative | trend
    metric = "train/train_rollout_logprob_abs_diff"
    why = "one short sentence: what a failure means"   # required
    ...                                # the kind's own fields, below

Kinds and their fields:
  completion  step = K            The metric has a value at step K (the run got that far). If any
                                  completion rule fails, every other rule is reported "blocked".
  finite      (none)              Every expected step has a finite value.
  bound       at = "every"        Each expected step satisfies the comparison.
              at = "step", step = K            The value at step K does.
              at = "window", reduce = "mean" | "median" | "min" | "max",
                  and optionally first = N or last = N (default: all expected steps)
                                  The reduction over that window does.
              Comparison: one lower bound (gt or ge) and/or one upper bound (lt or le);
              abs = true compares |value|.
  band        rtol, atol (>= 0)   Per step of the recipe's blessed reference series:
                                  |x - ref| <= max(rtol * |ref|, atol). With no reference blessed
                                  yet the row reads "unreferenced" and does not decide the gate.
  relative    reduce = "mean" | "median" | "min" | "max" (default "median"),
              from_step = N (default 0), gt/ge/lt/le
                                  One-sided band for speed: reduce(x) / reduce(ref) over the
                                  reference's steps >= N, compared with the bounds; e.g. step
                                  time `le = 1.25` (at most 1.25x the reference), throughput
                                  `ge = 0.8`. A reduction, not step by step: one slow step (a
                                  checkpoint save) moves a median little, a slower image moves it
                                  all. `from_step = 1` leaves out step 0 (compilation, warm-up).
                                  A step of the reference that the run lacks, or a NaN/inf, fails.
                                  "unreferenced" without a blessed reference, as a band.
  trend       window = N          delta = mean(last N) - mean(first N), compared with gt/ge/lt/le
                                  (abs = true allowed).

Expected steps of a metric: every step its step key (train/step for train/*, rollout/step for
rollout/* and perf/*; see runner/gate/metrics.py) reached in the run, plus 0..K of any completion rule
on that step key. A missing value, NaN or inf fails the rule it touches, always.

Load-time rejection: a rule that cannot fail - no comparison, a comparison every value in the
metric's range satisfies (`ge = 0` on a count, `le = 1` or `lt = 1.5` on a ratio, `gt = -1` or
`ge = 0` on an abs value), a band whose atol covers the whole range - or cannot pass, raises a
one-line RecipeError naming the file, the rule and the field. Ranges are closed, so strictness
counts: `lt = 1` on a ratio is accepted because a ratio of exactly 1 (every group zero-std)
fails it, while `le = 1` is refused.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError

SCHEMA = 1
KINDS = ("completion", "finite", "bound", "band", "relative", "trend")
REFERENCED = ("band", "relative")  # kinds judged against the blessed reference
REDUCTIONS = ("mean", "median", "min", "max")
INF = math.inf

# Ranges the metrics can take by construction (closed intervals), as (pattern, lo, hi); the first
# matching pattern wins. Only what the metric's definition guarantees: an unknown metric is (-inf, inf).
KNOWN_DOMAINS: tuple[tuple[str, float, float], ...] = (
    ("train/train_rollout_logprob_abs_diff", 0.0, INF),  # a mean of absolute values
    ("train/pg_clipfrac", 0.0, 1.0),                     # a fraction of tokens
    ("train/grad_norm", 0.0, INF),                       # a norm
    ("rollout/truncated_ratio", 0.0, 1.0),
    ("rollout/repetition_frac", 0.0, 1.0),
    ("rollout/prefix_cache_hit_rate", 0.0, 1.0),
    ("rollout/zero_std/*_percentage", 0.0, 1.0),         # groups / total groups
    ("rollout/zero_std/count_*", 0.0, INF),              # a count of groups
    ("rollout/response_len/*", 0.0, INF),                # token counts
    ("rollout/response_lengths", 0.0, INF),
    ("derived/zero_std_percentage", 0.0, 1.0),           # see runner/gate/metrics.py
    ("perf/wait_time_ratio", 0.0, 1.0),
    ("perf/*_time", 0.0, INF),
    ("perf/*tok_per_s", 0.0, INF),
    ("perf/*tokens_per_*", 0.0, INF),
    ("perf/*_mfu", 0.0, INF),
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_COMMON = {"name", "kind", "metric", "why"}
_CMP = {"gt", "ge", "lt", "le", "abs"}
_FIELDS = {
    "completion": _COMMON | {"step"},
    "finite": _COMMON,
    "bound": _COMMON | _CMP | {"at", "step", "reduce", "first", "last"},
    "band": _COMMON | {"rtol", "atol"},
    "relative": _COMMON | _CMP - {"abs"} | {"reduce", "from_step"},
    "trend": _COMMON | _CMP | {"window"},
}


@dataclass(frozen=True)
class Limit:
    """One side of a comparison: value, and whether equality passes (ge/le) or not (gt/lt)."""

    value: float
    inclusive: bool

    def lower_ok(self, x: float) -> bool:
        return x >= self.value if self.inclusive else x > self.value

    def upper_ok(self, x: float) -> bool:
        return x <= self.value if self.inclusive else x < self.value


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    metric: str
    why: str
    at: str = "every"                 # bound: every | step | window
    step: int | None = None           # completion, bound at step
    reduce: str | None = None         # bound at window
    first: int | None = None          # bound at window
    last: int | None = None           # bound at window
    window: int | None = None         # trend
    lower: Limit | None = None
    upper: Limit | None = None
    abs: bool = False
    rtol: float | None = None         # band
    atol: float | None = None         # band
    from_step: int = 0                # relative

    def bound_text(self) -> str:
        """The rule's condition in one short human line, e.g. `0 < x < 0.02 every step`."""
        if self.kind == "completion":
            return f"has step {self.step}"
        if self.kind == "finite":
            return "finite every step"
        if self.kind == "band":
            return f"|x-ref| <= max({self.rtol:g}*|ref|, {self.atol:g})"
        if self.kind == "relative":
            steps = f"steps >= {self.from_step}" if self.from_step else "all steps"
            subject = f"{self.reduce}(x)/{self.reduce}(ref) over {steps}"
            if self.lower:
                subject = f"{self.lower.value:g} {'<=' if self.lower.inclusive else '<'} {subject}"
            if self.upper:
                subject = f"{subject} {'<=' if self.upper.inclusive else '<'} {self.upper.value:g}"
            return subject
        subject = {"every": "x", "step": f"x[{self.step}]"}.get(self.at, "x")
        if self.kind == "bound" and self.at == "window":
            span = f"first {self.first}" if self.first else f"last {self.last}" if self.last else "all"
            # abs applies to each value before the reduction
            subject = f"{self.reduce}({'|x|, ' if self.abs else ''}{span})"
        if self.kind == "trend":
            subject = f"mean(last {self.window})-mean(first {self.window})"
        if self.abs and not (self.kind == "bound" and self.at == "window"):
            subject = f"|{subject}|"
        text = subject
        if self.lower:
            text = f"{self.lower.value:g} {'<=' if self.lower.inclusive else '<'} {text}"
        if self.upper:
            text = f"{text} {'<=' if self.upper.inclusive else '<'} {self.upper.value:g}"
        if self.kind == "bound" and self.at == "every":
            text += " every step"
        return text


@dataclass(frozen=True)
class Expected:
    path: Path
    rules: tuple[Rule, ...]
    domains: dict[str, tuple[float, float]] = field(default_factory=dict)
    extends: tuple[Path, ...] = ()  # the files this one extends, nearest first

    def domain(self, metric: str) -> tuple[float, float]:
        return domain_of(metric, self.domains)

    def completion_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.kind == "completion"]

    def metrics(self) -> list[str]:
        """The gated metrics, in rule order, each once."""
        return list(dict.fromkeys(r.metric for r in self.rules))


def builtin_domain(metric: str) -> tuple[float, float]:
    for pattern, lo, hi in KNOWN_DOMAINS:
        if fnmatch.fnmatchcase(metric, pattern):
            return lo, hi
    return -INF, INF


def domain_of(metric: str, overrides: dict[str, tuple[float, float]] | None = None) -> tuple[float, float]:
    if overrides and metric in overrides:
        return overrides[metric]
    return builtin_domain(metric)


# -- loading ---------------------------------------------------------------------------------

def load_expected(path: str | Path, _chain: tuple[Path, ...] = ()) -> Expected:
    """Read and validate an expected-metrics file (and the file it extends); any problem is a
    one-line UsageError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: expected-metrics file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an expected-metrics file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    return parse_expected_text(raw, path, _chain)


def parse_expected_text(raw: bytes, path: Path, _chain: tuple[Path, ...] = ()) -> Expected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 (byte {e.start}); an expected-metrics file is UTF-8 TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({one_line(str(e))})") from None
    except ValueError as e:  # an integer of 5000 digits: past Python's int conversion limit
        raise UsageError(f"{path}: not valid TOML ({one_line(str(e))[:80]})") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid TOML (nested too deeply)") from None
    return parse_expected(data, path, _chain)


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse_expected(data: dict[str, Any], path: Path, _chain: tuple[Path, ...] = ()) -> Expected:
    if data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: field 'schema' must be {SCHEMA}, got {data.get('schema')!r}")
    unknown = set(data) - {"schema", "domains", "rule", "extends", "drop"}
    if unknown:
        raise UsageError(f"{path}: unknown top-level key {_short(sorted(unknown)[0])} "
                         "(expected: schema, extends, drop, [domains], [[rule]])")
    base = _base(data, path, _chain)
    domains = {**(base.domains if base else {}), **_parse_domains(data.get("domains", {}), path)}
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise UsageError(f"{path}: field 'rule': expected an array of tables ([[rule]]), got {_toml_type(raw_rules)}")
    if not raw_rules and base is None:
        raise UsageError(f"{path}: no [[rule]] entries; an expected-metrics file needs at least one rule")
    own: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, i, path, domains)
        if rule.name in seen:
            raise UsageError(f"{path}: rule '{rule.name}': field 'name': duplicate rule name")
        seen.add(rule.name)
        own.append(rule)
    rules = own if base is None else _merge(base, own, _drop(data, path, base, seen))
    if not rules:
        raise UsageError(f"{path}: field 'drop' leaves no rule; an expected-metrics file needs at least one")
    return Expected(path=path, rules=tuple(rules), domains=domains,
                    extends=(base.path, *base.extends) if base else ())


def _base(data: dict[str, Any], path: Path, chain: tuple[Path, ...]) -> Expected | None:
    """The file named by `extends` (relative to this one), loaded and validated on its own."""
    if "extends" not in data:
        if "drop" in data:
            raise UsageError(f"{path}: field 'drop' needs 'extends' (it removes rules of the extended file)")
        return None
    ext = data["extends"]
    if not isinstance(ext, str) or not ext.strip():
        raise UsageError(f"{path}: field 'extends': expected a path relative to this file, got {_short(ext)}")
    here = path.resolve()
    target = (path.parent / ext).resolve()
    if target in (*chain, here):
        raise UsageError(f"{path}: field 'extends': {ext} extends back to this file (a cycle)")
    if len(chain) >= 4:
        raise UsageError(f"{path}: field 'extends': more than 4 files deep")
    return load_expected(path.parent / ext, (*chain, here))


def _drop(data: dict[str, Any], path: Path, base: Expected, own: set[str]) -> set[str]:
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(n, str) for n in drop):
        raise UsageError(f"{path}: field 'drop': expected an array of rule names, got {_short(drop)}")
    names = {r.name for r in base.rules}
    for n in drop:
        if n not in names:
            raise UsageError(f"{path}: field 'drop': no rule {_short(n)} in {base.path}")
        if n in own:
            raise UsageError(f"{path}: rule '{n}': both dropped and redefined; do one")
    return set(drop)


def _merge(base: Expected, own: list[Rule], drop: set[str]) -> list[Rule]:
    """The base's rules in order, each replaced whole by this file's rule of the same name; then
    this file's new rules. A replaced completion rule stays where it was."""
    mine = {r.name: r for r in own}
    merged = [mine.get(r.name, r) for r in base.rules if r.name not in drop]
    base_names = {r.name for r in base.rules}
    return merged + [r for r in own if r.name not in base_names]


def _toml_type(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


def as_float(v: Any) -> float | None:
    """A TOML number as a float; None for anything else (a bool, a string, an integer past float's range)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _parse_domains(table: Any, path: Path) -> dict[str, tuple[float, float]]:
    if not isinstance(table, dict):
        raise UsageError(f"{path}: field 'domains': expected a table of metric = [lo, hi], got {_toml_type(table)}")
    out: dict[str, tuple[float, float]] = {}
    for metric, pair in table.items():
        where = f"{path}: [domains] {_short(metric)}"
        nums = [as_float(v) for v in pair] if isinstance(pair, list) else []
        if len(nums) != 2 or None in nums:
            raise UsageError(f"{where}: expected [lo, hi] (two numbers), got {_short(pair)}")
        lo, hi = nums
        if math.isnan(lo) or math.isnan(hi) or lo >= hi:
            raise UsageError(f"{where}: expected lo < hi, got [{lo:g}, {hi:g}]")
        blo, bhi = builtin_domain(metric)
        if lo < blo or hi > bhi:
            raise UsageError(f"{where}: [{lo:g}, {hi:g}] widens the metric's built-in range "
                             f"[{blo:g}, {bhi:g}]; a domain may only narrow it")
        out[metric] = (lo, hi)
    return out


def _parse_rule(raw: Any, index: int, path: Path, domains: dict[str, tuple[float, float]]) -> Rule:
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: rule #{index + 1}: expected a table, got {_toml_type(raw)}")
    name = raw.get("name")
    label = f"'{name}'" if isinstance(name, str) and _NAME_RE.fullmatch(name) else f"#{index + 1}"

    def err(fld: str, problem: str) -> UsageError:
        return UsageError(f"{path}: rule {label}: field '{fld}': {problem}")

    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise err("name", f"expected a name of letters, digits, _ . - ; got {_short(name)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise err("kind", f"expected one of {', '.join(KINDS)}; got {_short(kind)}")
    unknown = set(raw) - _FIELDS[kind]
    if unknown:
        raise err(_short(sorted(unknown)[0])[1:-1], f"not a field of a {kind} rule "
                  f"(allowed: {', '.join(sorted(_FIELDS[kind]))})")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip() or any(not c.isprintable() for c in metric):
        raise err("metric", f"expected a metric name such as 'train/loss', got {_short(metric)}")
    if metric.endswith("/step"):
        # step keys index the series (runner/gate/metrics.py); they are never series themselves
        raise err("metric", f"{metric} is a step key, not a series; gate a metric logged at every step "
                  "(e.g. train/grad_norm with kind = \"completion\")")
    why = raw.get("why")
    if not isinstance(why, str) or not why.strip():
        raise err("why", "every rule needs a short 'why' (what a failure means)")

    def int_field(fld: str, minimum: int) -> int | None:
        v = raw.get(fld)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise err(fld, f"expected an integer >= {minimum}, got {_short(v)}")
        return v

    def num_field(fld: str) -> float | None:
        v = raw.get(fld)
        if v is None:
            return None
        f = as_float(v)
        if f is None or not math.isfinite(f):
            raise err(fld, f"expected a finite number, got {_short(v)}")
        return f

    fields: dict[str, Any] = {"name": name, "kind": kind, "metric": metric, "why": why.strip()}
    domain = domain_of(metric, domains)

    if kind == "completion":
        step = int_field("step", 0)
        if step is None:
            raise err("step", "a completion rule needs step = K (the step the run must reach)")
        return Rule(**fields, step=step)
    if kind == "finite":
        return Rule(**fields)
    if kind == "relative":
        reduce = raw.get("reduce", "median")
        if reduce not in REDUCTIONS:
            raise err("reduce", f"expected one of {', '.join(REDUCTIONS)}; got {_short(reduce)}")
        from_step = int_field("from_step", 0) or 0
        lower, upper = _limits(raw, err, num_field)
        rule = Rule(**fields, reduce=reduce, from_step=from_step, lower=lower, upper=upper)
        # a ratio of two values of a non-negative metric is non-negative; otherwise it can be anything
        _check_falsifiable(rule, (0.0, INF) if domain[0] >= 0 else (-INF, INF), err)
        return rule
    if kind == "band":
        rtol, atol = num_field("rtol"), num_field("atol")
        for fld, v in (("rtol", rtol), ("atol", atol)):
            if v is None:
                raise err(fld, "a band rule needs both rtol and atol (use 0 for none)")
            if v < 0:
                raise err(fld, f"must be >= 0, got {v:g}")
        lo, hi = domain
        if math.isfinite(hi - lo) and atol >= hi - lo:
            raise err("atol", f"{atol:g} covers the whole range [{lo:g}, {hi:g}] of {metric}: "
                      "the band cannot fail")
        return Rule(**fields, rtol=rtol, atol=atol)

    # bound and trend: comparisons
    lower, upper = _limits(raw, err, num_field)
    use_abs = raw.get("abs", False)
    if not isinstance(use_abs, bool):
        raise err("abs", f"expected true or false, got {_short(use_abs)}")
    if kind == "trend":
        window = int_field("window", 1)
        if window is None:
            raise err("window", "a trend rule needs window = N (mean of the last N vs the first N)")
        lo, hi = domain
        span = hi - lo
        domain = (-span, span) if math.isfinite(span) else (-INF, INF)
        rule = Rule(**fields, window=window, lower=lower, upper=upper, abs=use_abs)
    else:
        at = raw.get("at", "every")
        if at not in ("every", "step", "window"):
            raise err("at", f"expected 'every', 'step' or 'window', got {_short(at)}")
        step = int_field("step", 0)
        reduce, first, last = raw.get("reduce"), int_field("first", 1), int_field("last", 1)
        if at == "step" and step is None:
            raise err("step", "at = \"step\" needs step = K")
        if at != "step" and step is not None:
            raise err("step", f"only used with at = \"step\" (this rule has at = {at!r})")
        if at == "window":
            if reduce not in REDUCTIONS:
                raise err("reduce", f"at = \"window\" needs reduce = one of {', '.join(REDUCTIONS)}; "
                          f"got {_short(reduce)}")
            if first is not None and last is not None:
                raise err("last", "give first = N or last = N, not both")
        else:
            for fld in ("reduce", "first", "last"):
                if raw.get(fld) is not None:
                    raise err(fld, f"only used with at = \"window\" (this rule has at = {at!r})")
        rule = Rule(**fields, at=at, step=step, reduce=reduce, first=first, last=last,
                    lower=lower, upper=upper, abs=use_abs)
    if use_abs:
        domain = abs_domain(domain)
    _check_falsifiable(rule, domain, err)
    return rule


def _limits(raw: dict[str, Any], err, num_field) -> tuple[Limit | None, Limit | None]:
    if "gt" in raw and "ge" in raw:
        raise err("ge", "give one lower bound (gt or ge), not both")
    if "lt" in raw and "le" in raw:
        raise err("le", "give one upper bound (lt or le), not both")
    lower = upper = None
    if "gt" in raw or "ge" in raw:
        fld = "gt" if "gt" in raw else "ge"
        lower = Limit(num_field(fld), inclusive=fld == "ge")
    if "lt" in raw or "le" in raw:
        fld = "lt" if "lt" in raw else "le"
        upper = Limit(num_field(fld), inclusive=fld == "le")
    if lower is None and upper is None:
        raise err("gt", "no bound: give at least one of gt, ge, lt, le (a rule without one cannot fail)")
    return lower, upper


def abs_domain(domain: tuple[float, float]) -> tuple[float, float]:
    lo, hi = domain
    if lo >= 0:
        return lo, hi
    if hi <= 0:
        return -hi, -lo
    return 0.0, max(-lo, hi)


def _check_falsifiable(rule: Rule, domain: tuple[float, float], err) -> None:
    """Reject comparisons that every value in `domain` satisfies, or that none does."""
    lo, hi = domain
    lower, upper = rule.lower, rule.upper
    what = f"|{rule.metric}|" if rule.abs else rule.metric
    if rule.kind == "trend":
        what = f"the change of {what}"
    lower_can_fail = lower is not None and (lo < lower.value or (lo == lower.value and not lower.inclusive))
    upper_can_fail = upper is not None and (hi > upper.value or (hi == upper.value and not upper.inclusive))
    if not lower_can_fail and not upper_can_fail:
        fld = _field_name(upper, "le", "lt") if upper is not None else _field_name(lower, "ge", "gt")
        raise err(fld, f"cannot fail: every value of {what} lies in [{lo:g}, {hi:g}]")
    # Can it pass? The feasible set is [max(lo, L), min(hi, U)] with the limits' strictness.
    a, a_strict = (lo, False) if lower is None or lower.value < lo else (lower.value, not lower.inclusive)
    b, b_strict = (hi, False) if upper is None or upper.value > hi else (upper.value, not upper.inclusive)
    if a > b or (a == b and (a_strict or b_strict)):
        fld = _field_name(lower, "ge", "gt") if lower is not None and lower.value > lo else \
            _field_name(upper, "le", "lt")
        raise err(fld, f"cannot pass: no value of {what} in [{lo:g}, {hi:g}] satisfies it")


def _field_name(limit: Limit | None, inclusive: str, strict: str) -> str:
    return inclusive if limit is not None and limit.inclusive else strict


def _short(v: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message: repr, newlines escaped, clipped."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
