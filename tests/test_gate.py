"""The gate: every rule kind passes and fails where it should; the controls get their verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runner.errors import RecipeError
from runner.gate.evaluate import (
    BLOCKED,
    FAIL,
    PASS,
    UNREFERENCED,
    compare_bands,
    compare_exact,
    evaluate,
    format_table,
    write_gate_json,
)
from runner.gate.expected import load_expected
from runner.gate.metrics import Series, collect
from runner.paths import recipes_dir

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "data" / "events"
NANO = recipes_dir() / "nemotron3_nano" / "expected_metrics.toml"
NAN, INF = math.nan, math.inf


def expected(tmp_path: Path, *rules: str):
    p = tmp_path / "expected_metrics.toml"
    body = "".join(f'\n[[rule]]\nname = "r{i}"\nwhy = "w"\nevidence = "e"\n{r}\n' for i, r in enumerate(rules))
    p.write_text("schema = 1\n" + body)
    return load_expected(p)


def series(**metrics: list[float]) -> Series:
    """Series from lists indexed by step; '__' in a keyword stands for '/'. None = missing step."""
    return Series(values={k.replace("__", "/"): {i: v for i, v in enumerate(vs) if v is not None}
                          for k, vs in metrics.items()}, source="test")


def verdicts(tmp_path, rules, s, reference=None):
    return [r.verdict for r in evaluate(expected(tmp_path, *rules), s, reference).rows]


# -- rule kinds --------------------------------------------------------------------------------

def test_bound_every_step(tmp_path):
    rule = 'kind = "bound"\nmetric = "train/x"\nat = "every"\nlt = 0.02'
    assert verdicts(tmp_path, [rule], series(train__x=[0.01, 0.019])) == [PASS]
    assert verdicts(tmp_path, [rule], series(train__x=[0.01, 0.02])) == [FAIL]          # strict
    assert verdicts(tmp_path, [rule], series(train__x=[0.01, NAN])) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__x=[0.01, -INF])) == [FAIL]
    # a step another train/* metric reached but this one lacks is missing, and fails
    assert verdicts(tmp_path, [rule], series(train__x=[0.01, None], train__y=[1.0, 1.0])) == [FAIL]
    le = 'kind = "bound"\nmetric = "train/x"\nle = 0.02'
    assert verdicts(tmp_path, [le], series(train__x=[0.02])) == [PASS]


def test_bound_at_one_step_with_abs(tmp_path):
    rule = 'kind = "bound"\nmetric = "train/ppo_kl"\nat = "step"\nstep = 0\nabs = true\nlt = 1e-9'
    assert verdicts(tmp_path, [rule], series(train__ppo_kl=[-5e-10, 0.3])) == [PASS]   # only step 0
    assert verdicts(tmp_path, [rule], series(train__ppo_kl=[-2e-9, 0.0])) == [FAIL]    # |x| counts
    assert verdicts(tmp_path, [rule], series(train__ppo_kl=[None, 0.0])) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__ppo_kl=[NAN])) == [FAIL]


@pytest.mark.parametrize("reduce, window, values, ok", [
    ("mean", "", [1.0, 2.0, 3.0], True),            # mean 2 > 1.5
    ("mean", "", [1.0, 1.0, 2.0], False),           # mean 1.33
    ("median", "", [0.0, 2.0, 3.0], True),
    ("min", "", [2.0, 1.0, 3.0], False),
    ("max", "", [0.0, 0.0, 1.6], True),
    ("mean", "last = 2", [0.0, 2.0, 2.0], True),    # the first step is outside the window
    ("mean", "first = 2", [0.0, 2.0, 9.0], False),  # the last step is outside the window
    ("mean", "last = 2", [9.0, 9.0, NAN], False),   # NaN inside the window fails
    ("mean", "first = 2", [2.0, 2.0, NAN], True),   # NaN outside it does not touch this rule
    ("mean", "last = 4", [2.0, 2.0, 2.0], False),   # too few steps for the window
])
def test_bound_window(tmp_path, reduce, window, values, ok):
    rule = f'kind = "bound"\nmetric = "rollout/x"\nat = "window"\nreduce = "{reduce}"\n{window}\ngt = 1.5'
    assert verdicts(tmp_path, [rule], series(rollout__x=values)) == [PASS if ok else FAIL]


def test_finite(tmp_path):
    rule = 'kind = "finite"\nmetric = "train/loss"'
    assert verdicts(tmp_path, [rule], series(train__loss=[0.1, -3.0, 1e30])) == [PASS]
    assert verdicts(tmp_path, [rule], series(train__loss=[0.1, INF])) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__loss=[0.1, None], train__grad_norm=[1.0, 1.0])) == [FAIL]
    assert verdicts(tmp_path, [rule], series(rollout__x=[1.0])) == [FAIL]     # never logged at all


def test_trend(tmp_path):
    up = 'kind = "trend"\nmetric = "rollout/raw_reward"\nwindow = 2\ngt = 0.05'
    assert verdicts(tmp_path, [up], series(rollout__raw_reward=[0.1, 0.1, 0.15, 0.2, 0.2])) == [PASS]
    assert verdicts(tmp_path, [up], series(rollout__raw_reward=[0.1, 0.1, 0.15, 0.1, 0.12])) == [FAIL]
    assert verdicts(tmp_path, [up], series(rollout__raw_reward=[0.1, NAN, 0.15, 0.2, 0.2])) == [FAIL]
    assert verdicts(tmp_path, [up], series(rollout__raw_reward=[0.1, 0.2, 0.3])) == [PASS]   # windows overlap
    assert verdicts(tmp_path, [up], series(rollout__raw_reward=[0.1])) == [FAIL]             # shorter than N
    flat = 'kind = "trend"\nmetric = "train/entropy_loss"\nwindow = 1\nabs = true\nle = 0.1'
    assert verdicts(tmp_path, [flat], series(train__entropy_loss=[0.4, 0.45, 0.35])) == [PASS]
    assert verdicts(tmp_path, [flat], series(train__entropy_loss=[0.4, 0.45, 0.2])) == [FAIL]


def test_band_against_a_reference(tmp_path):
    rule = 'kind = "band"\nmetric = "train/x"\nrtol = 0.1\natol = 0.01'
    ref = series(train__x=[1.0, 0.0, 2.0])
    # step 0: tol 0.1 (rtol); step 1: tol 0.01 (atol wins near 0); step 2: tol 0.2
    assert verdicts(tmp_path, [rule], series(train__x=[1.09, 0.01, 1.81]), ref) == [PASS]
    assert verdicts(tmp_path, [rule], series(train__x=[1.09, 0.011, 1.81]), ref) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__x=[1.09, 0.0, NAN]), ref) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__x=[1.11, 0.0, 2.0]), ref) == [FAIL]
    assert verdicts(tmp_path, [rule], series(train__x=[1.0, 0.0]), ref) == [FAIL]       # step 2 missing
    # no reference: unreferenced, which does not decide the gate
    r = evaluate(expected(tmp_path, rule), series(train__x=[5.0]), None)
    assert [row.verdict for row in r.rows] == [UNREFERENCED] and r.passed


def test_completion_guard_blocks_everything_else(tmp_path):
    rules = ['kind = "completion"\nmetric = "train/loss"\nstep = 3',
             'kind = "finite"\nmetric = "train/loss"',
             'kind = "bound"\nmetric = "train/loss"\nat = "step"\nstep = 0\nlt = 1.0']
    assert verdicts(tmp_path, rules, series(train__loss=[0.5, 0.5, 0.5, 0.5])) == [PASS, PASS, PASS]
    # stopped after step 1: the guard fails, the step-0 bound that holds is blocked, the finite rule fails
    # because steps 2 and 3 (up to the guard's K) are missing
    r = evaluate(expected(tmp_path, *rules), series(train__loss=[0.5, 0.5]), None)
    assert [row.verdict for row in r.rows] == [FAIL, FAIL, BLOCKED]
    assert not r.passed
    assert r.rows[0].observed == "last step 1"


def test_empty_series_fails(tmp_path):
    r = evaluate(expected(tmp_path, 'kind = "bound"\nmetric = "train/x"\nlt = 1'), Series(), None)
    assert not r.passed and r.rows[0].observed == "no values"


# -- the controls on nemotron3_nano's expected metrics ---------------------------------------

def gate_on(control: str):
    return evaluate(load_expected(NANO), collect(EVENTS / control), None)


def failing(result) -> dict[str, str]:
    return {r.rule.name: r.verdict for r in result.rows if r.verdict not in (PASS, UNREFERENCED)}


def test_healthy_control_passes():
    r = gate_on("healthy")
    assert r.passed, format_table(r)
    assert failing(r) == {}


def test_router_scale_1_control_fails_on_the_logprob_diff_only():
    r = gate_on("router_scale_1")
    assert not r.passed
    assert failing(r) == {"logprob_diff_below_0.02": FAIL}
    row = next(x for x in r.rows if x.rule.name == "logprob_diff_below_0.02")
    assert len(row.failures) == 10 and all(0.25 < f["value"] < 0.31 for f in row.failures)


def test_nan_grad_norm_control_fails_on_finiteness():
    r = gate_on("nan_grad_norm")
    # a NaN fails every rule it touches: the finite rule and both bounds on the gradient norm
    assert failing(r) == {"grad_norm_finite": FAIL, "grad_norm_positive": FAIL, "grad_norm_not_absurd": FAIL}
    row = next(x for x in r.rows if x.rule.name == "grad_norm_finite")
    assert row.failures == [{"step": 5, "value": None, "problem": "nan"}]


def test_stopped_after_6_control_fails_the_completion_guard_and_nothing_passes():
    r = gate_on("stopped_after_6")
    f = failing(r)
    assert f["all_train_steps"] == FAIL and f["all_rollouts"] == FAIL
    assert all(row.verdict != PASS for row in r.rows)
    assert f["ppo_kl_zero_at_step0"] == BLOCKED     # holds at step 0, but the run is partial


def test_collapsed_groups_fail_diversity(tmp_path):
    # deterministic collapse: every group all-0 or all-1 on every rollout
    s = collect(EVENTS / "healthy")
    for step in range(10):
        s.values["derived/zero_std_percentage"][step] = 1.0
    r = evaluate(load_expected(NANO), s, None)
    assert failing(r) == {"group_reward_diversity": FAIL}


# -- comparing runs ------------------------------------------------------------------------------

def test_compare_exact_reports_every_kind_of_difference():
    a = series(train__x=[1.0, 2.0, NAN], train__only_a=[1.0], train__z=[0.0])
    b = series(train__x=[1.0, 2.0000000000000004, NAN, 4.0], train__only_b=[1.0], train__z=[-0.0])
    diffs = compare_exact(a, b)
    assert diffs[0] == "train/only_a: only in the first run"
    assert diffs[1] == "train/only_b: only in the second run"
    assert diffs[2].startswith("train/x step 1: 0x1.0000000000000p+1 != 0x1.0000000000001p+1")
    assert diffs[3] == "train/x step 3: only in the second run"
    assert diffs[4].startswith("train/z step 0:")      # 0.0 and -0.0 differ in bits
    assert len(diffs) == 5                             # NaN == NaN here
    assert compare_exact(collect(EVENTS / "healthy"), collect(EVENTS / "healthy")) == []


def test_compare_bands_between_two_runs():
    exp = load_expected(NANO)
    healthy, nan_run, broken = (collect(EVENTS / c) for c in ("healthy", "nan_grad_norm", "router_scale_1"))
    assert compare_exact(healthy, nan_run)                        # different seeds: not bitwise equal
    assert compare_bands(nan_run, healthy, exp).passed            # but within the bands
    r = compare_bands(broken, healthy, exp)
    assert {row.rule.name: row.verdict for row in r.rows} == {"logprob_diff_band": FAIL, "response_len_band": PASS}
    # a reference run without the metric cannot vouch for anything
    r = compare_bands(healthy, Series(values={}), exp)
    assert not r.passed


def test_gate_json_is_strict_json(tmp_path):
    import json

    r = gate_on("nan_grad_norm")
    p = write_gate_json(r, tmp_path / "gate.json")
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    d = json.loads(p.read_text(), parse_constant=no_constants)
    assert d["passed"] is False and d["counts"] == {"pass": 11, "fail": 3, "unreferenced": 5}
    row = next(x for x in d["rows"] if x["rule"] == "grad_norm_finite")
    assert row["failures"] == [{"step": 5, "value": None, "problem": "nan"}] and row["why"]


# -- what a healthy-looking gate must not pass (issue 14, "The gate") ------------------------------

TINY = recipes_dir() / "nemotron3_nano_tiny" / "expected_metrics.toml"
TRAIN_RULES = ("reward_finite", "grad_norm_positive", "grad_norm_not_absurd", "loss_not_identically_zero")


def broken(change) -> Series:
    s = collect(EVENTS / "healthy")
    change(s.values)
    return s


def verdicts_of(path: Path, s: Series, names=TRAIN_RULES) -> dict[str, str]:
    rows = {r.rule.name: r.verdict for r in evaluate(load_expected(path), s, None).rows}
    return {n: rows[n] for n in names}


@pytest.mark.parametrize("path", [NANO, TINY], ids=["nemotron3_nano", "nemotron3_nano_tiny"])
def test_each_recipe_has_the_rules_and_they_fail_what_passed_before(path):
    assert set(verdicts_of(path, collect(EVENTS / "healthy")).values()) == {PASS}

    def nan_reward(v):
        v["rollout/raw_reward"] = {s: NAN for s in v["rollout/raw_reward"]}

    def nothing_trained(v):
        v["train/grad_norm"] = {s: 0.0 for s in v["train/grad_norm"]}
        v["train/loss"] = {s: 0.0 for s in v["train/loss"]}

    def exploded(v):
        v["train/grad_norm"] = {s: (1e30 if s >= 3 else x) for s, x in v["train/grad_norm"].items()}

    assert verdicts_of(path, broken(nan_reward))["reward_finite"] == FAIL
    got = verdicts_of(path, broken(nothing_trained))
    assert got["grad_norm_positive"] == FAIL and got["loss_not_identically_zero"] == FAIL
    row = next(r for r in evaluate(load_expected(path), broken(exploded), None).rows
               if r.rule.name == "grad_norm_not_absurd")
    assert row.verdict == FAIL and [f["step"] for f in row.failures] == list(range(3, 10))
    for rule in load_expected(path).rules:
        if rule.name in TRAIN_RULES:
            assert len(rule.why) > 20


def test_a_completion_rule_at_step_10_to_the_12_allocates_nothing(tmp_path):
    import tracemalloc

    rules = ['kind = "completion"\nmetric = "train/loss"\nstep = 1000000000000',
             'kind = "finite"\nmetric = "train/loss"',
             'kind = "bound"\nmetric = "train/loss"\nat = "window"\nreduce = "mean"\nlt = 1.0',
             'kind = "bound"\nmetric = "train/loss"\nat = "window"\nreduce = "mean"\nlast = 3\nlt = 1.0',
             'kind = "trend"\nmetric = "train/loss"\nwindow = 2\nlt = 1.0']
    exp = expected(tmp_path, *rules)
    tracemalloc.start()
    r = evaluate(exp, series(train__loss=[0.5, 0.5, NAN]), None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000
    assert [row.verdict for row in r.rows] == [FAIL] * 5
    finite = r.rows[1].as_dict()
    # step 2 is NaN; steps 3..10^12 are one run of missing steps
    assert finite["failures"] == [{"step": 2, "value": None, "problem": "nan"},
                                  {"step": 3, "value": None, "problem": "missing", "last_step": 10**12,
                                   "count": 10**12 - 2}]
    assert finite["failures_total"] == 10**12 - 1
    assert "steps 3..1000000000000: missing" in r.rows[1].observed
    last3 = r.rows[3].failures[0]                                # the last 3 steps lie in the missing run
    assert last3["step"] <= 10**12 - 2 and last3["last_step"] == 10**12 and last3["problem"] == "missing"


def write_events(d: Path, *lines: dict) -> Path:
    import json

    d.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[str]] = {}
    for e in lines:
        src = e.pop("file")
        by_file.setdefault(src, []).append(json.dumps({"type": "metric", **e}))
    for name, ls in by_file.items():
        (d / name).write_text("\n".join(ls) + "\n")
    return d


def test_a_metric_that_turns_into_a_string_is_reported(tmp_path):
    rank0 = {"component": "actor", "cell_index": 0, "rank_within_cell": 0}
    events = [{"file": "actor_cell0_rank0.jsonl", "source": rank0,
               "metrics": {"train/step": s, "train/grad_norm": "overflow" if s == 2 else 0.5}} for s in range(4)]
    s = collect(write_events(tmp_path / "ev", *events))
    assert s.nonnumeric == {("train/grad_norm", 2): "actor_cell0_rank0: 'overflow'"}
    r = evaluate(expected(tmp_path, 'kind = "finite"\nmetric = "train/grad_norm"'), s, None)
    assert r.rows[0].verdict == FAIL
    assert r.rows[0].failures == [{"step": 2, "value": None, "problem": "not a number (actor_cell0_rank0: 'overflow')"}]
    assert r.notes == ["train/grad_norm step 2: not a number (actor_cell0_rank0: 'overflow')"]
    assert "note: train/grad_norm step 2: not a number" in format_table(r)
    # ungated, it is still reported
    r = evaluate(expected(tmp_path, 'kind = "finite"\nmetric = "train/other"'), s, None)
    assert r.notes and "train/grad_norm step 2" in r.notes[0]


def test_nan_on_one_rank_and_finite_on_another_is_reported_and_fails_finite(tmp_path):
    def rank(n):
        return {"component": "actor", "cell_index": 0, "rank_within_cell": n}

    events = [{"file": f"actor_cell0_rank{n}.jsonl", "source": rank(n),
               "metrics": {"rollout/step": st, "rollout/raw_reward": None if (n == 4 and st == 1) else 0.25}}
              for n in (0, 4) for st in range(3)]
    s = collect(write_events(tmp_path / "ev", *events))
    assert s.values["rollout/raw_reward"] == {0: 0.25, 1: 0.25, 2: 0.25}   # rank 0's value is kept
    r = evaluate(expected(tmp_path, 'kind = "finite"\nmetric = "rollout/raw_reward"'), s, None)
    assert r.rows[0].verdict == FAIL
    assert r.rows[0].failures[0]["problem"] == "NaN/inf on actor_cell0_rank4"
    assert r.notes == ["rollout/raw_reward step 1: 0.25 from actor_cell0_rank0 (kept) but NaN/inf from "
                       "actor_cell0_rank4"]


# -- speed against the reference (issue 15, section 2) ---------------------------------------------

def test_relative_rule(tmp_path):
    rule = 'kind = "relative"\nmetric = "perf/step_time"\nfrom_step = 1\nle = 1.25'
    ref = series(perf__step_time=[500.0, 100.0, 100.0, 100.0])
    assert verdicts(tmp_path, [rule], series(perf__step_time=[900.0, 120.0, 124.0, 125.0]), ref) == [PASS]
    # a slow step 0 (compilation) is left out; one slow step moves a median little
    assert verdicts(tmp_path, [rule], series(perf__step_time=[5000.0, 100.0, 400.0, 100.0]), ref) == [PASS]
    assert verdicts(tmp_path, [rule], series(perf__step_time=[500.0, 130.0, 130.0, 130.0]), ref) == [FAIL]
    assert verdicts(tmp_path, [rule], series(perf__step_time=[500.0, 100.0, 100.0]), ref) == [FAIL]   # missing
    assert verdicts(tmp_path, [rule], series(perf__step_time=[500.0, 100.0, NAN, 100.0]), ref) == [FAIL]
    assert verdicts(tmp_path, [rule], series(perf__step_time=[1.0]), None) == [UNREFERENCED]
    zero = series(perf__step_time=[1.0, 0.0, 0.0, 0.0])
    assert verdicts(tmp_path, [rule], series(perf__step_time=[1.0, 0.0, 0.0, 0.0]), zero) == [FAIL]
    tput = 'kind = "relative"\nmetric = "perf/actor_train_tok_per_s"\nreduce = "mean"\nge = 0.8'
    ref = series(perf__actor_train_tok_per_s=[1000.0, 1000.0])
    assert verdicts(tmp_path, [tput], series(perf__actor_train_tok_per_s=[850.0, 800.0]), ref) == [PASS]
    assert verdicts(tmp_path, [tput], series(perf__actor_train_tok_per_s=[780.0, 800.0]), ref) == [FAIL]


def test_slow_control_fails_the_speed_rules_against_a_healthy_reference():
    exp, healthy, slow = load_expected(NANO), collect(EVENTS / "healthy"), collect(EVENTS / "slow_30pct")
    # nothing but the perf/* series differs from healthy
    assert {d.split()[0] for d in compare_exact(healthy, slow)} <= {m for m in slow.values if m.startswith("perf/")}
    assert evaluate(exp, slow, None).passed                     # unreferenced until a run is blessed
    r = evaluate(exp, slow, healthy)
    assert failing(r) == {"step_time_vs_reference": FAIL, "rollout_throughput_vs_reference": FAIL,
                          "train_throughput_vs_reference": FAIL}
    row = next(x for x in r.rows if x.rule.name == "step_time_vs_reference")
    assert "1.300x ref" in row.observed
    # healthy against itself, and another healthy seed against healthy, pass the speed rules
    assert evaluate(exp, healthy, healthy).passed
    other = evaluate(exp, collect(EVENTS / "nan_grad_norm"), healthy)
    assert {r.rule.name: r.verdict for r in other.rows}["step_time_vs_reference"] == PASS


# -- evidence: a rule whose bound comes from elsewhere says so until this recipe's blessed run passes it --

def test_a_provisional_rule_is_marked_in_the_gate_table_until_a_blessed_run_passes_it(tmp_path):
    exp = expected(tmp_path, 'kind = "bound"\nmetric = "train/x"\nlt = 1\nprovisional = "upstream CI of other models"',
                   'kind = "bound"\nmetric = "train/x"\nlt = 1')
    r = evaluate(exp, series(train__x=[0.5]), None)
    table = format_table(r, columns=200)
    row0, row1 = (line for line in table.splitlines() if line.startswith(("r0 ", "r1 ")))
    assert "PASS (provisional)" in row0 and "provisional: evidence from upstream CI of other models" in row0
    assert "provisional" not in row1
    assert r.as_dict()["rows"][0]["provisional"] == "upstream CI of other models"
    assert "provisional" not in r.as_dict()["rows"][1] and r.passed       # marked, not failed
    failing = evaluate(exp, series(train__x=[2.0]), None)
    assert "FAIL (provisional)" in format_table(failing, columns=200) and not failing.passed
    # a blessed reference of this recipe that passes the rule confirms it; one that fails it does not
    assert not evaluate(exp, series(train__x=[0.5]), series(train__x=[0.7])).rows[0].provisional
    assert evaluate(exp, series(train__x=[0.5]), series(train__x=[3.0])).rows[0].provisional


def test_evidence_is_required_and_provisional_must_say_from_where(tmp_path):
    p = tmp_path / "e.toml"
    for body, field in (('why = "w"\n', "evidence"), ('why = "w"\nevidence = ""\n', "evidence"),
                        ('why = "w"\nevidence = "e"\nprovisional = true\n', "provisional")):
        p.write_text(f'schema = 1\n[[rule]]\nname = "a"\nkind = "finite"\nmetric = "train/x"\n{body}')
        with pytest.raises(RecipeError, match=f"rule 'a': field '{field}'"):
            load_expected(p)


def _step0(disagree: float, seed: int = 0, samples: int = 64, tokens: int = 64, vocab: int = 32):
    """train/ppo_kl and train/pg_clipfrac at step 0 as miles computes them (per-sample token means,
    averaged over samples; clipped where the advantage's side of the ratio leaves [0.8, 1.28]), from
    two forwards of one policy whose logits are rounded to bf16 after a reduction in another order.
    `disagree` > 0 gives the second forward other weights: logits moved by that much per entry."""
    import random
    import struct

    rng = random.Random(seed)

    def bf16(x: float) -> float:   # round to nearest even, to bfloat16's 8 significant bits
        b = struct.unpack(">I", struct.pack(">f", x))[0]
        b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
        return struct.unpack(">f", struct.pack(">I", b))[0]

    def log_softmax(z: list[float]) -> list[float]:
        m = max(z)
        lse = m + math.log(sum(math.exp(v - m) for v in z))
        return [v - lse for v in z]

    kl_sum = clip_sum = 0.0
    for _ in range(samples):
        adv = rng.choice((-1.0, 1.0))
        kl = clip = 0.0
        for _ in range(tokens):
            z = [rng.gauss(0, 3) for _ in range(vocab)]
            # each forward accumulates in its own order: ~1 bf16 rounding step (2^-8 relative) apart
            old = log_softmax([bf16(v * (1 + rng.gauss(0, 2 ** -9))) for v in z])
            new = log_softmax([bf16((v + rng.gauss(0, disagree)) * (1 + rng.gauss(0, 2 ** -9))) for v in z])
            p = [math.exp(v) for v in old]
            t = rng.choices(range(vocab), weights=p)[0]   # the token the old policy sampled
            d = old[t] - new[t]
            ratio = math.exp(-d)
            kl += d
            clip += (adv > 0 and ratio > 1.28) or (adv < 0 and ratio < 0.8)
        kl_sum += kl / tokens
        clip_sum += clip / tokens
    return kl_sum / samples, clip_sum / samples


def test_step0_rules_pass_bf16_noise_and_fail_a_gross_disagreement():
    """The nemotron3_nano step-0 rules (recipes/lib/miles_grpo_expected.toml): two bf16 forwards of
    the same weights pass; old log-probs of other weights (logits 0.5 apart: a KL of ~0.07) fail."""
    from runner.gate.evaluate import judge

    exp = load_expected(NANO)
    rules = [r for r in exp.rules if r.name in ("ppo_kl_zero_at_step0", "pg_clipfrac_zero_at_step0")]
    assert len(rules) == 2
    for seed in (0, 1):
        kl, clip = _step0(0.0, seed)
        assert kl != 0.0                          # not bitwise: the noise the rules must allow
        s = series(train__ppo_kl=[kl], train__pg_clipfrac=[clip])
        assert [judge(r, exp, s, None).verdict for r in rules] == [PASS, PASS], (kl, clip)
    kl, clip = _step0(0.5)
    s = series(train__ppo_kl=[kl], train__pg_clipfrac=[clip])
    assert [judge(r, exp, s, None).verdict for r in rules] == [FAIL, FAIL], (kl, clip)
