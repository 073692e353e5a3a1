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
    evidence = "where the bound comes from: which runs measured it, or whose check it copies"  # required
    provisional = "upstream CI of other models"  # optional: the evidence is from other models or
                                       # modes; the gate table marks the rule provisional until the
                                       # recipe's blessed reference passes it (band and relative
                                       # rules, judged against that reference, stay provisional)
    ...                                # the kind's own fields, below

Kinds and their fields (each kind is one class in runner/gate/rules.py; its docstring says more):
  completion  step = K
  finite      (none)
  bound       at = "every" | "step" (with step = K) | "window" (with reduce = mean|median|min|max and
              optionally first = N or last = N); gt or ge, lt or le; abs = true compares |x|
  band        rtol, atol (>= 0): |x - ref| <= max(rtol * |ref|, atol) per step of the blessed reference
  relative    reduce (default median), from_step = N (default 0), gt/ge/lt/le on reduce(x) / reduce(ref)
  trend       window = N, gt/ge/lt/le (abs allowed) on mean(last N) - mean(first N)
A band or relative rule without a blessed reference reads "unreferenced" and does not decide the gate.

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
from runner.gate.rules import KINDS, Completion, Fields, Kind, Rule, as_float, short

SCHEMA = 1
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
_COMMON = {"name", "kind", "metric", "why", "evidence", "provisional"}


@dataclass(frozen=True)
class Expected:
    path: Path
    rules: tuple[Rule, ...]
    domains: dict[str, tuple[float, float]] = field(default_factory=dict)
    extends: tuple[Path, ...] = ()  # the files this one extends, nearest first

    def domain(self, metric: str) -> tuple[float, float]:
        return domain_of(metric, self.domains)

    def completion_rules(self) -> list[Completion]:
        return [r for r in self.rules if isinstance(r, Completion)]

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
        raise UsageError(f"{path}: unknown top-level key {short(sorted(unknown)[0])} "
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
        raise UsageError(f"{path}: field 'extends': expected a path relative to this file, got {short(ext)}")
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
        raise UsageError(f"{path}: field 'drop': expected an array of rule names, got {short(drop)}")
    names = {r.name for r in base.rules}
    for n in drop:
        if n not in names:
            raise UsageError(f"{path}: field 'drop': no rule {short(n)} in {base.path}")
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


def _parse_domains(table: Any, path: Path) -> dict[str, tuple[float, float]]:
    if not isinstance(table, dict):
        raise UsageError(f"{path}: field 'domains': expected a table of metric = [lo, hi], got {_toml_type(table)}")
    out: dict[str, tuple[float, float]] = {}
    for metric, pair in table.items():
        where = f"{path}: [domains] {short(metric)}"
        nums = [as_float(v) for v in pair] if isinstance(pair, list) else []
        if len(nums) != 2 or None in nums:
            raise UsageError(f"{where}: expected [lo, hi] (two numbers), got {short(pair)}")
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
    """The fields every rule has, then its kind's own (runner/gate/rules.py)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: rule #{index + 1}: expected a table, got {_toml_type(raw)}")
    name = raw.get("name")
    f = Fields(raw, path, f"'{name}'" if isinstance(name, str) and _NAME_RE.fullmatch(name) else f"#{index + 1}")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise f.err("name", f"expected a name of letters, digits, _ . - ; got {short(name)}")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise f.err("kind", f"expected one of {', '.join(KINDS)}; got {short(kind)}")
    cls = KINDS[Kind(kind)]
    allowed = _COMMON | cls.FIELDS
    unknown = set(raw) - allowed
    if unknown:
        raise f.err(short(sorted(unknown)[0])[1:-1], f"not a field of a {kind} rule "
                    f"(allowed: {', '.join(sorted(allowed))})")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip() or any(not c.isprintable() for c in metric):
        raise f.err("metric", f"expected a metric name such as 'train/loss', got {short(metric)}")
    if metric.endswith("/step"):
        # step keys index the series (runner/gate/metrics.py); they are never series themselves
        raise f.err("metric", f"{metric} is a step key, not a series; gate a metric logged at every step "
                    "(e.g. train/grad_norm with kind = \"completion\")")
    text = {}
    for fld, need in (("why", "what a failure means"), ("evidence", "where its bound comes from"),
                      ("provisional", "which other models or modes its evidence is from")):
        v = raw.get(fld)
        if (v is not None or fld != "provisional") and (not isinstance(v, str) or not v.strip()):
            raise f.err(fld, f"expected a short text saying {need}, got {short(v)}")
        text[fld] = (v or "").strip()
    return cls.read(f, {"name": name, "metric": metric, **text}, domain_of(metric, domains))
