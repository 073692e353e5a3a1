"""A run's metrics as one normalized series per metric and step, and `metrics.jsonl`.

Sources, in order of preference:
  1. miles-format event files (`--save-debug-event-data DIR`; the tiny recipe writes them, a miles
     run of this bundle does not: docs/records.md): one JSON object per line, one file per
     process (`main.jsonl`, `rollout_manager.jsonl`, `actor_cell0_rank0.jsonl`...). Only
     `"type": "metric"` events are read; their `metrics` dict carries its own step key. NaN and
     inf arrive as null (pydantic's JSON) and become NaN.
  2. miles stdout, how a miles run is captured (`... log_utils.py:542 - step K: {...}`,
     `rollout K: {...}`, `perf K: {...}`, in logs/run.log):
     Python dict reprs, parsed by a literal-only AST walk (nan, inf, np.float64(x), tensor(x)
     allowed; no call is ever evaluated; np.float32(x) / np.float16(x) are rounded to their width).
  3. an existing metrics.jsonl (a run directory whose raw sources are gone).

Steps: `train/*` is keyed by `train/step`; `rollout/*`, `perf/*` and everything else by
`rollout/step` (`eval/*` by `eval/step`). A value whose event lacks its step key is not placed
(counted in the header as `unplaced`). Step keys themselves are not series.

Rank rule (several processes may log one metric at one step): the value from the process that
comes first in main < rollout_manager < actor cell/rank ascending < critic < anything else wins;
within one process the last line wins (a retried step is logged again and supersedes the first).
For stdout, each log file is one process, in file-name order. Any other value that differs
(bitwise) from the kept one is recorded as a conflict in the header, never averaged.

Derived series (computed after collection, step key rollout/step):
  derived/zero_std_percentage = rollout/zero_std/all_zero_percentage + all_one_percentage, the
  fraction of GRPO groups whose samples all got the same 0/1 reward (zero advantage).

metrics.jsonl: a header line {"schema": 1, "kind": "recipe-metrics", ...}, then one line per value
{"metric", "step", "step_key", "value"}, sorted; a non-finite value is written as null with
"nonfinite": "nan" | "inf" | "-inf". Floats are written with repr, so they read back bit for bit.
"""

from __future__ import annotations

import ast
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.atomicfile import write_text_atomic
from runner.console import safe
from runner.errors import EXIT_CORRUPT, RecipeError, UsageError
from runner.gate.files import EVENTS_MAX, LINE_MAX, METRICS_MAX, open_regular, read_lines, read_regular

SCHEMA = 1
KIND = "recipe-metrics"
METRICS_FILE = "metrics.jsonl"
RANK_RULE = ("first process in main < rollout_manager < actor(cell, rank) < critic(cell, rank) < other; "
             "last line within a process")
NOT_EVENT_FILES = {METRICS_FILE, "reference_metrics.jsonl"}
LOG_SUFFIXES = (".log", ".out", ".txt")
DERIVED_ZERO_STD = "derived/zero_std_percentage"


def step_key_for(metric: str) -> str:
    if metric.startswith("train/"):
        return "train/step"
    if metric.startswith("eval/"):
        return "eval/step"
    return "rollout/step"


def is_step_key(name: str) -> bool:
    return name.endswith("/step")


@dataclass
class Series:
    """metric -> {step -> value}; NaN stands for a null/NaN value, inf for inf."""

    values: dict[str, dict[int, float]] = field(default_factory=dict)
    source: str = "none"                 # events | stdout | metrics.jsonl | none
    files: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    unplaced: int = 0
    skipped_lines: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)   # more header fields (a reference's provenance)
    # (metric, step) -> "origin: repr" of a value that is not a number (a string, a bool, a list)
    nonnumeric: dict[tuple[str, int], str] = field(default_factory=dict)
    # the run's own num_rollout (run.json/plan.json of a run directory): steps per step key it was
    # launched for; None judges it by the recipe's full length (runner/gate/evaluate.py)
    planned: int | None = None

    def metrics(self) -> list[str]:
        return sorted(self.values)

    def steps(self, metric: str) -> list[int]:
        return sorted(self.values.get(metric, {}))

    def get(self, metric: str, step: int) -> float | None:
        return self.values.get(metric, {}).get(step)

    def key_steps(self, step_key: str) -> list[int]:
        """Every step any metric keyed by `step_key` reached."""
        steps: set[int] = set()
        for m, by_step in self.values.items():
            if step_key_for(m) == step_key:
                steps.update(by_step)
        # a step logged with a value that is not a number was reached too
        steps.update(s for (m, s) in self.nonnumeric if step_key_for(m) == step_key)
        return sorted(steps)

    def header(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kind": KIND, "source": self.source, "files": self.files,
                "rank_rule": RANK_RULE, "conflicts": len(self.conflicts),
                "conflict_examples": self.conflicts[:5], "unplaced": self.unplaced,
                "skipped_lines": self.skipped_lines[:20], "nonnumeric": len(self.nonnumeric),
                "nonnumeric_examples": [f"{m} step {s}: {v}" for (m, s), v in list(self.nonnumeric.items())[:5]],
                **self.extra}

    def anomalies(self, metrics: list[str] | None = None) -> list[str]:
        """One line per thing a reader must know that no rule may touch: a value that is not a number
        where the metric is numeric elsewhere (or gated), and a step two processes logged one
        finite and one NaN/inf. `metrics`: the gated ones."""
        gated = set(metrics or ())
        out = [f"{m} step {s}: not a number ({v})" for (m, s), v in sorted(self.nonnumeric.items())
               if m in gated or m in self.values]
        for c in self.conflicts:
            (ko, kv), (oo, ov) = c["kept"], c["other"]
            if (kv is None) != (ov is None):
                out.append(f"{c['metric']} step {c['step']}: {_word(kv)} from {ko} (kept) but {_word(ov)} from {oo}")
        return out


# -- collecting ------------------------------------------------------------------------------

def collect(path: str | Path) -> Series:
    """The series of a run directory, an events directory, an event/log file, or a metrics.jsonl.

    A directory's files are read under runner/gate/files.py's rules, with the directory as root:
    regular files only, no link out of it, of bounded size (a planted FIFO or /dev/zero is refused).
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{safe(path)}: no such run directory or metrics file")
    if not path.is_dir():
        if path.name == METRICS_FILE or _is_metrics_file(path):
            return read_metrics_jsonl(path)
        if path.suffix == ".jsonl":
            return add_derived(parse_event_files([path]))
        return add_derived(parse_stdout_files([path]))
    series = _collect_dir(path)
    for parent in resumed_chain(path):
        series = _continued(_collect_dir(parent), series, parent.name)
    series.planned = planned_steps(path)
    return series


CHAIN_MAX = 64  # resumes of resumes a run's metrics are followed through; far above any real chain


def resumed_chain(run_dir: Path) -> list[Path]:
    """The runs a resumed run continues, newest first (run.json's resume_of.run_dir, of each in turn).

    run.json is data: a parent is only ever a sibling directory of the same name, not a link, so a
    record can point at no directory outside the runs directory it sits in."""
    chain: list[Path] = []
    here = run_dir
    while len(chain) < CHAIN_MAX:
        try:
            doc = json.loads(read_regular(here / "run.json", root=here)) if (here / "run.json").is_file() else None
        except (OSError, ValueError, RecipeError):
            doc = None
        ref = doc.get("resume_of") if isinstance(doc, dict) else None
        name = Path(ref["run_dir"]).name if isinstance(ref, dict) and isinstance(ref.get("run_dir"), str) else ""
        parent = run_dir.parent / name
        if name in ("", ".", "..") or parent.is_symlink() or not parent.is_dir() or parent in (run_dir, *chain):
            break
        chain.append(parent)
        here = parent
    return chain


def _continued(parent: Series, child: Series, parent_name: str) -> Series:
    """One series of a run and the run that resumed it: the parent's steps before the first step the
    child logged for the same step key (a step the parent ran past its checkpoint is the child's),
    then the child's. Each step is seen once."""
    first: dict[str, int] = {}
    for key in {step_key_for(m) for m in child.values} | {step_key_for(m) for (m, _) in child.nonnumeric}:
        steps = child.key_steps(key)
        if steps:
            first[key] = steps[0]
    out = Series(source=child.source, files=[*parent.files, *child.files], conflicts=parent.conflicts + child.conflicts,
                 unplaced=parent.unplaced + child.unplaced, skipped_lines=parent.skipped_lines + child.skipped_lines,
                 extra={**child.extra, "resumed_from": [parent_name, *child.extra.get("resumed_from", [])]})
    keep = {}
    for m, by_step in parent.values.items():
        cut = first.get(step_key_for(m))
        keep[m] = {s: v for s, v in by_step.items() if cut is None or s < cut}
    for m, by_step in child.values.items():
        keep.setdefault(m, {}).update(by_step)
    out.values = {m: v for m, v in keep.items() if v}
    out.nonnumeric = {(m, s): v for (m, s), v in parent.nonnumeric.items()
                      if first.get(step_key_for(m)) is None or s < first[step_key_for(m)]}
    out.nonnumeric.update(child.nonnumeric)
    return out


def _collect_dir(path: Path) -> Series:
    events = find_event_files(path)
    if events:
        series = parse_event_files(events, root=path)
        if series.values:
            return add_derived(series)
    logs = find_log_files(path)
    if logs:
        series = parse_stdout_files(logs, root=path)
        if series.values:
            return add_derived(series)
    if _present(path / METRICS_FILE):
        return read_metrics_jsonl(path / METRICS_FILE, root=path)
    return Series(files=[str(p) for p in events + logs])


PLANNED_MAX = 10**9   # far above any num_rollout the options allow; a bigger number is not taken


def planned_steps(run_dir: Path) -> int | None:
    """The run's own num_rollout: run.json's script_env.RECIPE_NUM_ROLLOUT, else plan.json's
    options.num_rollout. These files are data: only a positive integer (or its decimal text) counts;
    anything else, or no file, is None (the gate then holds the run to the recipe's full length)."""
    for name, where in (("run.json", ("script_env", "RECIPE_NUM_ROLLOUT")), ("plan.json", ("options", "num_rollout"))):
        if not (run_dir / name).is_file():
            continue
        try:
            doc = json.loads(read_regular(run_dir / name, root=run_dir))
        except (OSError, ValueError, RecipeError):
            continue
        v = (doc.get(where[0]) if isinstance(doc, dict) else None) or {}
        v = v.get(where[1]) if isinstance(v, dict) else None
        if isinstance(v, str) and re.fullmatch(r"[1-9][0-9]{0,9}", v):
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= PLANNED_MAX:
            return v
    return None


def _present(p: Path) -> bool:
    """A name that is there, whatever it is: what is not a regular file is refused when read, not skipped."""
    return p.is_symlink() or (p.exists() and not p.is_dir())


def find_event_files(d: Path) -> list[Path]:
    where = d / "events" if (d / "events").is_dir() else d
    return sorted(p for p in where.glob("*.jsonl") if p.name not in NOT_EVENT_FILES and _present(p))


def find_log_files(d: Path) -> list[Path]:
    found = [p for sub in (d, d / "logs") if sub.is_dir() for p in sub.iterdir()
             if p.suffix in LOG_SUFFIXES and _present(p)]
    return sorted(found)


def _open(f: Path, root: Path | None, limit: int = EVENTS_MAX, what: str = "events or log file"):
    try:
        return open_regular(f, root, limit, what)
    except FileNotFoundError:
        raise UsageError(f"{safe(f)}: cannot read (no such file: a dangling link?)") from None


def _word(v: Any) -> str:
    return "NaN/inf" if v is None else f"{v:.6g}"


class _Collector:
    """Applies the rank rule while values arrive in any order."""

    def __init__(self) -> None:
        self.nonnumeric: dict[tuple[str, int], str] = {}
        # (metric, step) -> (precedence, order, value, origin)
        self.kept: dict[tuple[str, int], tuple[tuple, int, float, str]] = {}
        self.others: dict[tuple[str, int], list[tuple[float, str]]] = {}
        self.order = 0
        self.unplaced = 0

    def add(self, metric: str, step: int, value: float, precedence: tuple, origin: str) -> None:
        self.order += 1
        key = (metric, step)
        new = (precedence, self.order, value, origin)
        old = self.kept.get(key)
        if old is None:
            self.kept[key] = new
            return
        # Same process: later supersedes. Other process: lower precedence tuple wins.
        if precedence <= old[0]:
            self.kept[key] = new
            if precedence < old[0]:
                self.others.setdefault(key, []).append((old[2], old[3]))
        else:
            self.others.setdefault(key, []).append((value, origin))

    def series(self, source: str, files: list[Path], skipped: list[str]) -> Series:
        values: dict[str, dict[int, float]] = {}
        for (metric, step), (_, _, value, _) in self.kept.items():
            values.setdefault(metric, {})[step] = value
        conflicts = []
        for key, others in sorted(self.others.items()):
            _, _, kept_value, kept_origin = self.kept[key]
            for value, origin in others:
                if not same_bits(value, kept_value):
                    conflicts.append({"metric": key[0], "step": key[1], "kept": [kept_origin, _jsonable(kept_value)],
                                      "other": [origin, _jsonable(value)]})
        return Series(values={m: dict(sorted(v.items())) for m, v in sorted(values.items())}, source=source,
                      files=[str(f) for f in files], conflicts=conflicts, unplaced=self.unplaced,
                      skipped_lines=skipped, nonnumeric=self.nonnumeric)

    def add_dict(self, metrics: dict[str, Any], precedence: tuple, origin: str,
                 default_steps: dict[str, int] | None = None) -> None:
        for name, raw in metrics.items():
            if is_step_key(name):
                continue
            value = to_float(raw)
            sk = step_key_for(name)
            step = _as_step(metrics.get(sk))
            if step is None and default_steps:
                step = default_steps.get(sk)
            if value is _SKIP:
                if step is not None:
                    text = repr(raw)
                    self.nonnumeric[(name, step)] = f"{origin}: {text if len(text) <= 40 else text[:37] + '...'}"
                continue
            if step is None:
                self.unplaced += 1
                continue
            self.add(name, step, value, precedence, origin)


_SKIP = object()


def to_float(raw: Any) -> Any:
    """A metric value as float: None -> NaN (how NaN/inf arrive in events); non-numbers are skipped."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return _SKIP
    try:
        return float(raw)
    except OverflowError:  # an integer past float's range
        return math.inf if raw > 0 else -math.inf


def _as_step(raw: Any) -> int | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None


def source_precedence(source: Any) -> tuple[tuple, str]:
    """(precedence tuple, process name) of an event's `source` object."""
    if not isinstance(source, dict):
        return (9, str(source)), str(source)
    comp = source.get("component")
    if comp == "main":
        return (0,), "main"
    if comp == "rollout_manager":
        return (1,), "rollout_manager"
    if comp in ("actor", "critic"):
        cell, rank = source.get("cell_index", 0), source.get("rank_within_cell", 0)
        order = 2 if comp == "actor" else 3
        if _as_step(cell) is None or _as_step(rank) is None:  # not numbers: ranked after every real rank
            return (order, INF_RANK, INF_RANK, str(cell), str(rank)), f"{comp}_cell{cell}_rank{rank}"
        cell, rank = _as_step(cell), _as_step(rank)
        return (order, cell, rank, "", ""), f"{comp}_cell{cell}_rank{rank}"
    return (9, str(comp)), str(comp)


INF_RANK = 1 << 62


def parse_event_files(files: list[Path], root: Path | None = None) -> Series:
    col = _Collector()
    skipped: list[str] = []
    for f in files:
        # Read line by line: a line that does not parse is an error unless it is the last one.
        bad: RecipeError | None = None
        with _open(f, root) as fh:
            for i, line in read_lines(fh):
                if bad is not None:
                    raise bad
                if line is None:
                    raise RecipeError(f"{safe(f)}:{i}: a line longer than {LINE_MAX >> 20} MiB; not an event line",
                                      EXIT_CORRUPT)
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError) as e:  # JSONDecodeError, an integer of 5000 digits, [[[[...
                    why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
                    bad = RecipeError(f"{safe(f)}:{i}: not a JSON event line ({why})", EXIT_CORRUPT)
                    last = i
                    continue
                if not isinstance(event, dict) or event.get("type") != "metric":
                    continue
                metrics = event.get("metrics")
                if not isinstance(metrics, dict):
                    raise RecipeError(f"{safe(f)}:{i}: metric event without a 'metrics' object", EXIT_CORRUPT)
                precedence, origin = source_precedence(event.get("source"))
                col.add_dict(metrics, precedence, origin)
        if bad is not None:
            # A process killed mid-write leaves a partial last line; everything before it stands.
            skipped.append(f"{f.name}:{last}: partial last line")
    return col.series("events", files, skipped)


# -- stdout fallback ---------------------------------------------------------------------------

# The head of a metrics line; its body is the rest of the line, which must end in "}". (A pattern that
# also matched the body, `\{.*\}\s*$`, backtracked once per head: quadratic on a line of many heads.)
_LINE_RE = re.compile(r" - (?P<kind>(?:critic-)?step|rollout|perf|eval) (?P<k>\d+): (?=\{)")
_LINE_STEP_KEY = {"step": "train/step", "critic-step": "train/step", "rollout": "rollout/step",
                  "perf": "rollout/step", "eval": "eval/step"}
_NARROW = {"float32": "f", "float16": "e"}   # struct formats of the narrower numpy floats
_WRAPPER_RE = re.compile(r"^(?:float|int)(?:8|16|32|64)?$|^tensor$")


def parse_py_literal(text: str) -> Any:
    """A Python literal as printed by miles: dicts, numbers, strings, nan/inf, np.float64(x), tensor(x).

    Walks the AST and accepts only those node kinds; nothing is evaluated.
    """
    return _literal(ast.parse(text.strip(), mode="eval").body)


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | type(None)):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("nan", "inf", "NaN", "Infinity"):
        return math.nan if node.id in ("nan", "NaN") else math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _literal(node.operand)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("sign on a non-number")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Call) and len(node.args) == 1:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if _WRAPPER_RE.match(name):
            v = _literal(node.args[0])
            v = float(v) if isinstance(v, str) else v
            # np.float32(0.1) prints float32's shortest repr: the value is float32(0.1), not 0.1
            fmt = _NARROW.get(name)
            return struct.unpack(fmt, struct.pack(fmt, v))[0] if fmt and isinstance(v, int | float) else v
    raise ValueError(f"not a literal: {type(node).__name__}")


def parse_stdout_files(files: list[Path], root: Path | None = None) -> Series:
    col = _Collector()
    skipped: list[str] = []
    for order, f in enumerate(files):
        precedence, origin = (order,), f"stdout:{f.name}"
        with _open(f, root) as fh:
            for i, line in read_lines(fh):
                if line is None:
                    skipped.append(f"{f.name}:{i}: a line longer than {LINE_MAX >> 20} MiB")
                    continue
                # a carriage return ends a line too (a progress bar's), as universal newlines read it
                for piece in line.split("\r"):
                    _parse_stdout_line(piece, f"{f.name}:{i}", col, skipped, precedence, origin)
    return col.series("stdout", files, skipped)


def _parse_stdout_line(line: str, where: str, col: _Collector, skipped: list[str], precedence: tuple,
                       origin: str) -> None:
    m = _LINE_RE.search(line)
    body = line[m.end():].rstrip() if m else ""
    if not body.endswith("}"):
        return
    try:
        metrics = parse_py_literal(body)
        step = int(m.group("k"))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as e:
        # TypeError: an unhashable key ({[1]: 2}); ValueError: also a step of 5000 digits
        skipped.append(f"{where}: unparsable metrics dict ({type(e).__name__})")
        return
    if isinstance(metrics, dict):
        metrics = {str(k): v for k, v in metrics.items()}
        col.add_dict(metrics, precedence, origin, {_LINE_STEP_KEY[m.group("kind")]: step})


# -- derived series ----------------------------------------------------------------------------

def add_derived(series: Series) -> Series:
    zero = series.values.get("rollout/zero_std/all_zero_percentage", {})
    one = series.values.get("rollout/zero_std/all_one_percentage", {})
    both = sorted(set(zero) & set(one))
    if both:
        series.values[DERIVED_ZERO_STD] = {s: zero[s] + one[s] for s in both}
    return series


# -- metrics.jsonl -------------------------------------------------------------------------------

def same_bits(a: float, b: float) -> bool:
    """Bitwise float equality, except that all NaNs are one value (events cannot tell them apart)."""
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _jsonable(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _row(metric: str, step: int, value: float) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": metric, "step": step, "step_key": step_key_for(metric),
                           "value": _jsonable(value)}
    if not math.isfinite(value):
        row["nonfinite"] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return row


def metrics_jsonl_text(series: Series) -> str:
    lines = [json.dumps(series.header(), allow_nan=False)]
    for metric in series.metrics():
        for step, value in sorted(series.values[metric].items()):
            lines.append(json.dumps(_row(metric, step, value), allow_nan=False))
    return "\n".join(lines) + "\n"


def write_metrics_jsonl(series: Series, path: str | Path) -> Path:
    path = Path(path)
    write_text_atomic(path, metrics_jsonl_text(series))
    return path


def _is_metrics_file(path: Path) -> bool:
    with _open(path, None) as f:
        first = f.readline(LINE_MAX)
    try:
        first = json.loads(first.decode("utf-8") or "null")
    except (ValueError, RecursionError):   # not JSON or UTF-8, an integer of 5000 digits
        return False
    return isinstance(first, dict) and first.get("kind") == KIND


def read_metrics_jsonl(path: str | Path, root: Path | None = None) -> Series:
    """Read metrics.jsonl (or a reference file in the same format); returns the series and keeps the header."""
    path = Path(path)
    try:
        raw = read_regular(path, root, METRICS_MAX, "metrics file")
    except FileNotFoundError:
        raise UsageError(f"{safe(path)}: cannot read (no such file)") from None
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RecipeError(f"{safe(path)}: not UTF-8 (byte {e.start})", EXIT_CORRUPT) from None
    if not lines:
        raise RecipeError(f"{safe(path)}: empty; expected a {KIND} header line", EXIT_CORRUPT)
    try:
        header = json.loads(lines[0])
    except (ValueError, RecursionError):   # not JSON, an integer of 5000 digits, [[[[...
        header = None
    if not isinstance(header, dict) or header.get("kind") != KIND or header.get("schema") != SCHEMA:
        raise RecipeError(f"{safe(path)}:1: expected a header {{\"schema\": {SCHEMA}, \"kind\": \"{KIND}\"}}",
                          EXIT_CORRUPT)
    values: dict[str, dict[int, float]] = {}
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            metric, step, value = row["metric"], row["step"], row["value"]
            if value is None:
                value = {"inf": math.inf, "-inf": -math.inf}.get(row.get("nonfinite"), math.nan)
            if not isinstance(metric, str) or _as_step(step) is None or isinstance(value, bool):
                raise ValueError
            values.setdefault(metric, {})[int(step)] = float(value)
        except (KeyError, TypeError, ValueError, RecursionError, OverflowError):
            raise RecipeError(f"{safe(path)}:{i}: expected {{\"metric\", \"step\", \"value\"}}", EXIT_CORRUPT) from None
    standard = set(Series().header())
    return Series(values={m: dict(sorted(v.items())) for m, v in sorted(values.items())},
                  source=str(header.get("source", "metrics.jsonl")),
                  files=[str(x) for x in header.get("files") or [] if isinstance(header.get("files"), list)],
                  unplaced=header.get("unplaced") if isinstance(header.get("unplaced"), int) else 0,
                  extra={k: v for k, v in header.items() if k not in standard})
