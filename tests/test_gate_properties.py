"""Property-based tests of the gate's parsers: arbitrary text never gives a traceback, and literal
values come back literally (hypothesis generates the inputs; each property is a test that fails
on the first counterexample it finds)."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from runner.errors import RecipeError  # noqa: E402
from runner.gate.expected import parse_expected_text  # noqa: E402
from runner.gate.metrics import (  # noqa: E402
    parse_event_files,
    parse_py_literal,
    parse_stdout_files,
    read_metrics_jsonl,
    same_bits,
    write_metrics_jsonl,
)
from runner.gate.steps import ExpectedSteps, count  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# text that looks like what the parsers read: JSON and TOML punctuation, digits, keys, any unicode
PUNCT = st.sampled_from(list('{}[]":,=.-+eE0123456789 \n\t#/_') + ["null", "NaN", "inf", "true", "metrics",
                                                                    "metric", "type", "rollout/step", "train/step",
                                                                    "[[rule]]", "kind", "schema = 1", "\\"])
# and the pathological: numbers past any float, nesting past the recursion limit
EXTREME = st.sampled_from(["9" * 5000, "[" * 5000, "{" * 3000, "1e999", "-" + "9" * 400, "(" * 500])
NOISE = st.lists(st.one_of(PUNCT, st.text(max_size=4), EXTREME), max_size=60).map("".join)
METRIC = st.text(string.ascii_lowercase + "_/", min_size=1, max_size=12).map(
    lambda s: "train/" + s.strip("/")).filter(lambda m: not m.endswith("/step"))   # step keys are not series
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


# -- events --------------------------------------------------------------------------------------

@SETTINGS
@given(text=st.one_of(NOISE, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_events_parser_never_raises_anything_but_a_recipe_error(tmp_path, text):
    f = write(tmp_path, "main.jsonl", text.encode("utf-8", "surrogatepass"))
    try:
        parse_event_files([f])
    except RecipeError as e:
        assert "\n" not in e.message and str(f) in e.message


@SETTINGS
@given(events=st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["metric", "other"]),
    # few names and steps, so that several processes log the same metric at the same step
    "metrics": st.dictionaries(st.sampled_from(["train/a", "train/step", "rollout/b", "rollout/step", "x"]),
                               st.one_of(FLOATS, st.integers(0, 2), st.integers(), st.just(10**400),
                                         st.text(max_size=3), st.booleans(), st.none(),
                                         st.lists(st.integers(), max_size=2)), max_size=5),
    "source": st.one_of(st.none(), st.text(max_size=3), st.fixed_dictionaries({
        "component": st.sampled_from(["main", "actor", "critic", "rollout_manager", "x"]),
        "cell_index": st.one_of(st.integers(-2, 2), st.text(max_size=2), st.none()),
        "rank_within_cell": st.one_of(st.integers(-2, 2), st.floats(), st.lists(st.integers(), max_size=1))})),
}), max_size=12))
def test_well_formed_json_of_any_shape_parses(tmp_path, events):
    f = write(tmp_path, "ev.jsonl", "".join(json.dumps(e) + "\n" for e in events).encode())
    series = parse_event_files([f])
    for by_step in series.values.values():
        assert all(isinstance(s, int) and isinstance(v, float) for s, v in by_step.items())


@SETTINGS
@given(values=st.dictionaries(st.integers(-3, 10**15), FLOATS, min_size=1, max_size=8), metric=METRIC)
def test_event_values_come_back_bit_for_bit(tmp_path, values, metric):
    lines = [json.dumps({"type": "metric", "source": {"component": "actor", "cell_index": 0, "rank_within_cell": 0},
                         "metrics": {metric: v if math.isfinite(v) else None, "train/step": s}})
             for s, v in values.items()]
    f = write(tmp_path, "actor.jsonl", ("\n".join(lines) + "\n").encode())
    series = parse_event_files([f])
    got = series.values[metric]
    assert set(got) == set(values)
    for s, v in values.items():
        assert same_bits(got[s], v) if math.isfinite(v) else math.isnan(got[s])
    # and through metrics.jsonl, the file the gate and replay read back
    back = read_metrics_jsonl(write_metrics_jsonl(series, tmp_path / "metrics.jsonl"))
    for s, v in got.items():
        assert same_bits(back.values[metric][s], v)


@SETTINGS
@given(text=NOISE, step=st.one_of(st.integers(0, 10**6), st.just(10**5000)))
def test_stdout_parser_never_raises(tmp_path, text, step):
    import sys

    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)          # to write a step of 5000 digits into the log
    try:
        line = f"x log_utils.py:1 - step {step}: {{{text}}}\n{text}\n"
    finally:
        sys.set_int_max_str_digits(old)
    f = write(tmp_path, "run.log", line.encode("utf-8", "surrogatepass"))
    parse_stdout_files([f])


@SETTINGS
@given(values=st.dictionaries(METRIC, FLOATS, min_size=1, max_size=5))
def test_stdout_literals_come_back_literally(values):
    # miles prints a dict repr: nan and inf as bare names
    got = parse_py_literal(repr(values))
    assert set(got) == set(values)
    for k, v in values.items():
        assert same_bits(got[k], v)


# -- expected metrics ----------------------------------------------------------------------------

@SETTINGS
@given(text=st.one_of(NOISE, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_expected_parser_never_raises_anything_but_a_one_line_usage_error(text):
    path = Path("expected_metrics.toml")
    for raw in (text.encode("utf-8", "surrogatepass"), text.encode("latin-1", "replace"),
                ("schema = 1\n[[rule]]\n" + text).encode("utf-8", "surrogatepass")):
        try:
            parse_expected_text(raw, path)
        except RecipeError as e:
            assert e.code == 2 and "\n" not in e.message and e.message.startswith(f"{path}: ")


RULE_FIELD = st.sampled_from(["name", "kind", "metric", "why", "evidence", "provisional", "at", "step", "reduce",
                              "first", "last", "window", "gt", "ge", "lt", "le", "abs", "rtol", "atol", "from_step",
                              "bogus"])
TOML_VALUE = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True), st.booleans(),
                       st.text(max_size=6), st.sampled_from(['"bound"', '"every"', '"window"', '"mean"', '"band"',
                                                             '"relative"', '"trend"', '"completion"', '"finite"']))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str) and v.startswith('"'):
        return v
    return json.dumps(v)


@SETTINGS
@given(rules=st.lists(st.dictionaries(RULE_FIELD, TOML_VALUE, max_size=8), min_size=1, max_size=3))
def test_any_combination_of_rule_fields_is_accepted_or_refused_in_one_line(rules):
    body = "schema = 1\n" + "".join(
        "[[rule]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in r.items()) for r in rules)
    try:
        parse_expected_text(body.encode(), Path("e.toml"))
    except RecipeError as e:
        assert e.code == 2 and "\n" not in e.message


@SETTINGS
@given(lt=st.floats(min_value=1e-300, max_value=1e300), ge=st.floats(min_value=-1e300, max_value=-1e-300),
       step=st.integers(0, 2**62), name=st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True))
def test_rule_values_come_back_literally(lt, ge, step, name):
    text = (f'schema = 1\n[[rule]]\nname = "{name}"\nkind = "bound"\nmetric = "train/loss"\nwhy = "w"\n'
            f'evidence = "e"\nat = "step"\nstep = {step}\nge = {ge!r}\nlt = {lt!r}\n')
    rule = parse_expected_text(text.encode(), Path("e.toml")).rules[0]
    assert (rule.name, rule.step, rule.lower.value, rule.upper.value) == (name, step, ge, lt)
    assert rule.lower.inclusive and not rule.upper.inclusive


# -- expected steps: the bound 0..K behaves as the set it stands for ------------------------------

@SETTINGS
@given(reached=st.sets(st.integers(-3, 40), max_size=15), upto=st.integers(-1, 30),
       have=st.sets(st.integers(-3, 45), max_size=20), n=st.integers(1, 12))
def test_expected_steps_match_the_materialized_set(reached, upto, have, n):
    steps = ExpectedSteps(tuple(sorted(reached)), upto)
    full = sorted(reached | set(range(upto + 1)))
    values = dict.fromkeys(have, 1.0)
    assert len(steps) == len(full) and bool(steps) == bool(full)
    assert steps.head(n) == full[:n] and steps.tail(n) == full[-n:]
    assert steps.present(values) == [s for s in full if s in values]
    missing = steps.missing(values)
    assert count(missing) == len([s for s in full if s not in values])
    assert all(s in steps and s not in values for a, b in missing for s in range(a, b + 1))
