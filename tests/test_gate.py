"""The gate: every rule kind passes and fails where it should; the controls get their verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

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
    body = "".join(f'\n[[rule]]\nname = "r{i}"\nwhy = "w"\n{r}\n' for i, r in enumerate(rules))
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
    assert failing(r) == {"grad_norm_finite": FAIL}
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
    assert d["passed"] is False and d["counts"] == {"pass": 9, "fail": 1, "unreferenced": 2}
    row = next(x for x in d["rows"] if x["rule"] == "grad_norm_finite")
    assert row["failures"] == [{"step": 5, "value": None, "problem": "nan"}] and row["why"]
