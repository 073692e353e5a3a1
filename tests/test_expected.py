"""The expected-metrics loader: the recipe's file loads, and rules that cannot fail are refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runner.errors import EXIT_USAGE, RecipeError
from runner.gate.expected import load_expected
from runner.gate.rules import abs_domain
from runner.paths import recipes_dir


def write(tmp_path: Path, body: str, domains: str = "") -> Path:
    p = tmp_path / "expected_metrics.toml"
    p.write_text(f"schema = 1\n{domains}\n[[rule]]\nname = \"r1\"\nwhy = \"because\"\nevidence = \"e\"\n{body}\n")
    return p


def rejected(tmp_path: Path, body: str, domains: str = "") -> str:
    p = write(tmp_path, body, domains)
    with pytest.raises(RecipeError) as ei:
        load_expected(p)
    msg = ei.value.message
    assert ei.value.code == EXIT_USAGE
    assert "\n" not in msg and str(p) in msg
    return msg


def test_recipe_file_loads_with_every_kind():
    exp = load_expected(recipes_dir() / "nemotron3_nano" / "expected_metrics.toml")
    kinds = {r.kind for r in exp.rules}
    assert kinds == {"completion", "bound", "finite", "band", "relative"}
    by_name = {r.name: r for r in exp.rules}
    acc = by_name["logprob_diff_below_0.02"]
    assert acc.upper.value == 0.02 and not acc.upper.inclusive and acc.at == "every"
    kl = by_name["ppo_kl_zero_at_step0"]
    assert kl.abs and kl.step == 0 and kl.upper.value == 1e-3 and kl.provisional
    assert [r.step for r in exp.completion_rules()] == [9, 9]


@pytest.mark.parametrize("body, field, words", [
    # no bound at all
    ('kind = "bound"\nmetric = "train/loss"', "gt", "no bound"),
    # lower bound 0 on a count
    ('kind = "bound"\nmetric = "rollout/zero_std/count_0.0"\nge = 0', "ge", "cannot fail"),
    # a ratio bounded above by >= 1
    ('kind = "bound"\nmetric = "train/pg_clipfrac"\nle = 1.0', "le", "cannot fail"),
    ('kind = "bound"\nmetric = "rollout/truncated_ratio"\nlt = 1.5', "lt", "cannot fail"),
    # an absolute value bounded below by something <= 0
    ('kind = "bound"\nmetric = "train/ppo_kl"\nabs = true\ngt = -1.0', "gt", "cannot fail"),
    ('kind = "bound"\nmetric = "train/ppo_kl"\nabs = true\nge = 0.0', "ge", "cannot fail"),
    # both sides vacuous for a ratio
    ('kind = "bound"\nmetric = "rollout/truncated_ratio"\nge = 0.0\nle = 1.0', "le", "cannot fail"),
    # cannot pass
    ('kind = "bound"\nmetric = "train/ppo_kl"\nabs = true\nlt = 0.0', "lt", "cannot pass"),
    ('kind = "bound"\nmetric = "train/pg_clipfrac"\ngt = 1.0', "gt", "cannot pass"),
    ('kind = "bound"\nmetric = "train/loss"\ngt = 2.0\nlt = 1.0', "gt", "cannot pass"),
    # a window reduction keeps the metric's range
    ('kind = "bound"\nmetric = "train/grad_norm"\nat = "window"\nreduce = "mean"\nge = 0',
     "ge", "cannot fail"),
    # trend: the change of a [0,1] ratio lies in [-1, 1]
    ('kind = "trend"\nmetric = "rollout/truncated_ratio"\nwindow = 3\nge = -1.0', "ge", "cannot fail"),
    # band that covers the whole range
    ('kind = "band"\nmetric = "train/pg_clipfrac"\nrtol = 0\natol = 1.0', "atol", "cannot fail"),
    ('kind = "band"\nmetric = "train/loss"\nrtol = -0.1\natol = 0', "rtol", ">= 0"),
    ('kind = "band"\nmetric = "train/loss"\nrtol = 0.1', "atol", "both rtol and atol"),
    # shape errors
    ('kind = "bound"\nmetric = "train/loss"\nlt = nan', "lt", "finite number"),
    ('kind = "bound"\nmetric = "train/loss"\nlt = inf', "lt", "finite number"),
    ('kind = "bound"\nmetric = "train/loss"\nupper = 1.0', "upper", "not a field"),
    ('kind = "bound"\nmetric = "train/loss"\nat = "step"\nlt = 1.0', "step", "needs step"),
    ('kind = "bound"\nmetric = "train/loss"\nat = "window"\nlt = 1.0', "reduce", "needs reduce"),
    ('kind = "bound"\nmetric = "train/loss"\nat = "window"\nreduce = "mean"\nfirst = 2\nlast = 2\nlt = 1',
     "last", "not both"),
    ('kind = "bound"\nmetric = "train/loss"\ngt = 0\nge = 0', "ge", "not both"),
    ('kind = "completion"\nmetric = "train/loss"', "step", "needs step"),
    ('kind = "completion"\nmetric = "train/loss"\nstep = -1', "step", "integer >= 0"),
    ('kind = "trend"\nmetric = "train/loss"\nlt = 1', "window", "needs window"),
    ('kind = "frobnicate"\nmetric = "train/loss"', "kind", "one of"),
    ('kind = "completion"\nmetric = "train/step"\nstep = 9', "metric", "step key"),
])
def test_rules_that_cannot_fail_are_refused(tmp_path, body, field, words):
    msg = rejected(tmp_path, body)
    assert "rule 'r1'" in msg and f"field '{field}'" in msg and words in msg


def test_falsifiable_edges_are_accepted(tmp_path):
    # gt 0 on a non-negative metric can fail (x == 0); lt 1 on a ratio can fail (x == 1).
    for body in ('kind = "bound"\nmetric = "rollout/zero_std/count_0.0"\ngt = 0',
                 'kind = "bound"\nmetric = "train/pg_clipfrac"\nlt = 1.0',
                 'kind = "bound"\nmetric = "train/ppo_kl"\nabs = true\nle = 0.0',
                 'kind = "band"\nmetric = "train/pg_clipfrac"\nrtol = 0\natol = 0.99',
                 'kind = "finite"\nmetric = "train/loss"'):
        load_expected(write(tmp_path, body))


def test_domains_may_narrow_but_not_widen(tmp_path):
    narrow = '[domains]\n"rollout/raw_reward" = [0.0, 1.0]\n'
    rule = 'kind = "bound"\nmetric = "rollout/raw_reward"\nle = 1.0'
    assert "cannot fail" in rejected(tmp_path, rule, narrow)
    # without the domain the same rule is falsifiable (raw reward of an arbitrary RM is unbounded)
    load_expected(write(tmp_path, 'kind = "bound"\nmetric = "rollout/raw_reward"\nle = 1.0'))
    wide = '[domains]\n"train/pg_clipfrac" = [0.0, 2.0]\n'
    assert "widens" in rejected(tmp_path, 'kind = "finite"\nmetric = "train/loss"', wide)


def test_file_level_errors(tmp_path):
    p = tmp_path / "expected_metrics.toml"
    p.write_text("schema = 2\n")
    with pytest.raises(RecipeError, match="'schema' must be 1"):
        load_expected(p)
    p.write_text("schema = 1\n")
    with pytest.raises(RecipeError, match="no \\[\\[rule\\]\\]"):
        load_expected(p)
    p.write_text("schema = 1\n[[rule]\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_expected(p)
    with pytest.raises(RecipeError, match="not found"):
        load_expected(tmp_path / "nope.toml")
    two = ('schema = 1\n[[rule]]\nname="a"\nkind="finite"\nmetric="x"\nwhy="w"\nevidence="e"\n'
           '[[rule]]\nname="a"\nkind="finite"\nmetric="y"\nwhy="w"\nevidence="e"\n')
    p.write_text(two)
    with pytest.raises(RecipeError, match="duplicate"):
        load_expected(p)
    p.write_text('schema = 1\n[[rule]]\nname="a"\nkind="finite"\nmetric="x"\n')
    with pytest.raises(RecipeError, match="field 'why'"):
        load_expected(p)


def test_abs_domain():
    assert abs_domain((-2.0, 1.0)) == (0.0, 2.0)
    assert abs_domain((1.0, 3.0)) == (1.0, 3.0)
    assert abs_domain((-3.0, -1.0)) == (1.0, 3.0)
    assert abs_domain((-math.inf, math.inf)) == (0.0, math.inf)


def test_relative_rules_parse_and_cannot_be_vacuous(tmp_path):
    exp = load_expected(write(tmp_path, 'kind = "relative"\nmetric = "perf/step_time"\nfrom_step = 1\nle = 1.25'))
    rule = exp.rules[0]
    assert (rule.reduce, rule.from_step, rule.upper.value, rule.upper.inclusive) == ("median", 1, 1.25, True)
    assert rule.bound_text() == "median(x)/median(ref) over steps >= 1 <= 1.25"
    # a ratio of a non-negative metric is >= 0: `ge = 0` cannot fail
    assert "cannot fail" in rejected(tmp_path, 'kind = "relative"\nmetric = "perf/step_time"\nge = 0.0')
    assert "no bound" in rejected(tmp_path, 'kind = "relative"\nmetric = "perf/step_time"')
    assert "field 'abs'" in rejected(tmp_path, 'kind = "relative"\nmetric = "perf/step_time"\nabs = true\nle = 2.0')
    assert "field 'reduce'" in rejected(tmp_path, 'kind = "relative"\nmetric = "perf/step_time"\nreduce = "p99"\n'
                                                  'le = 2.0')
    assert "field 'from_step'" in rejected(tmp_path, 'kind = "relative"\nmetric = "perf/x"\nfrom_step = -1\nle = 2')


@pytest.mark.parametrize("text, words", [
    (b'schema = 1\nrule = 5\n', "field 'rule': expected an array of tables ([[rule]]), got an integer"),
    (b'schema = 1\n[rule]\nname = "a"\n', "field 'rule': expected an array of tables ([[rule]]), got a table"),
    (b'schema = 1\nrule = [1, 2]\n', "rule #1: expected a table, got an integer"),
    (b'schema = 1\ndomains = [1]\n[[rule]]\nname="a"\nkind="finite"\nmetric="x"\nwhy="w"\nevidence="e"\n',
     "field 'domains': expected a table of metric = [lo, hi], got an array"),
    (b'schema = 1\n[domains]\n"rollout/x" = 3\n[[rule]]\nname="a"\nkind="finite"\nmetric="x"\nwhy="w"\nevidence="e"\n',
     "[domains] 'rollout/x': expected [lo, hi] (two numbers), got 3"),
    (b'schema = 1\n[[rule]]\nname="a"\nkind="bound"\nmetric="x"\nwhy="w"\nevidence="e"\nlt = ' + b"9" * 400 + b"\n",
     "field 'lt': expected a finite number"),
    (b'schema = 1\n[[rule]]\nname="a\\n"\nkind="finite"\nmetric="x"\nwhy="w"\nevidence="e"\n', "rule #1: field 'name'"),
    (b'schema = 1\n[[rule]]\nname="a"\nkind="finite"\nmetric="x\\ny"\nwhy="w"\nevidence="e"\n', "field 'metric'"),
    (b'schema = 1 # caf\xe9\n', "not UTF-8 (byte 16)"),
])
def test_bad_files_are_one_line_usage_errors(tmp_path, text, words):
    p = tmp_path / "expected_metrics.toml"
    p.write_bytes(text)
    with pytest.raises(RecipeError) as ei:
        load_expected(p)
    assert ei.value.code == EXIT_USAGE and "\n" not in ei.value.message
    assert ei.value.message.startswith(f"{p}: ") and words in ei.value.message


def test_bad_expected_file_through_the_cli_is_exit_2_and_one_line(tmp_path):
    from conftest import ROOT, recipe

    p = tmp_path / "expected_metrics.toml"
    p.write_bytes(b"schema = 1\n\xff\xfe[[rule]]\n")
    r = recipe("check", str(ROOT / "tests" / "data" / "events" / "healthy"), "--expected", str(p))
    assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1 and "not UTF-8" in r.stderr
    assert "internal error" not in r.stderr
