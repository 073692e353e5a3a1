"""`extends` in expected-metrics files: a recipe's file starts from a shared one and replaces,
adds or drops rules by name; every problem is one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import EXIT_USAGE, RecipeError
from runner.gate.expected import load_expected
from runner.paths import recipes_dir

SHARED = recipes_dir() / "lib" / "miles_grpo_expected.toml"


def rule(name: str, lt: float = 1.0, metric: str = "train/loss") -> str:
    return (f'[[rule]]\nname = "{name}"\nkind = "bound"\nmetric = "{metric}"\nat = "every"\nlt = {lt}\nwhy = "w"\n'
            'evidence = "e"\n')


def files(tmp_path: Path, base: str, child: str) -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "base.toml").write_text(base)
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "expected_metrics.toml").write_text(child)
    return tmp_path / "r" / "expected_metrics.toml"


BASE = "schema = 1\n" + rule("a", 1.0) + rule("b", 2.0) + rule("c", 3.0)
HEAD = 'schema = 1\nextends = "../lib/base.toml"\n'


def test_a_rule_of_the_same_name_replaces_the_base_rule_in_its_place_and_new_rules_follow(tmp_path):
    exp = load_expected(files(tmp_path, BASE, HEAD + rule("b", 0.5) + rule("d", 4.0)))
    assert [(r.name, r.upper.value) for r in exp.rules] == [("a", 1.0), ("b", 0.5), ("c", 3.0), ("d", 4.0)]
    assert exp.path.name == "expected_metrics.toml" and exp.extends[0].name == "base.toml"


def test_drop_removes_base_rules_by_name(tmp_path):
    exp = load_expected(files(tmp_path, BASE, HEAD + 'drop = ["a", "c"]\n'))
    assert [r.name for r in exp.rules] == ["b"]


def test_base_domains_apply_to_the_extending_file(tmp_path):
    base = 'schema = 1\n[domains]\n"train/loss" = [0.0, 1.0]\n' + rule("a", 0.5)
    with pytest.raises(RecipeError, match="cannot fail"):  # lt = 2 on a metric the base bounds to [0, 1]
        load_expected(files(tmp_path, base, HEAD + rule("z", 2.0)))


@pytest.mark.parametrize("child, message", [
    (HEAD + 'drop = ["nope"]\n', "field 'drop': no rule 'nope' in"),
    (HEAD + 'drop = ["a"]\n' + rule("a", 0.1), "rule 'a': both dropped and redefined"),
    (HEAD + 'drop = ["a", "b", "c"]\n', "field 'drop' leaves no rule"),
    ('schema = 1\ndrop = ["a"]\n' + rule("x"), "field 'drop' needs 'extends'"),
    ('schema = 1\nextends = 3\n' + rule("x"), "field 'extends': expected a path"),
    ('schema = 1\nextends = "../lib/missing.toml"\n', "missing.toml: expected-metrics file not found"),
    ('schema = 1\nextends = "expected_metrics.toml"\n', "extends back to this file (a cycle)"),
    (HEAD + 'drop = "a"\n', "field 'drop': expected an array of rule names"),
])
def test_bad_extends_is_one_line_naming_the_file_and_field(tmp_path, child, message):
    with pytest.raises(RecipeError) as ei:
        load_expected(files(tmp_path, BASE, child))
    assert ei.value.code == EXIT_USAGE and message in ei.value.message and "\n" not in ei.value.message


def test_a_cycle_through_two_files_is_refused(tmp_path):
    path = files(tmp_path, 'schema = 1\nextends = "../r/expected_metrics.toml"\n' + rule("a"), HEAD)
    with pytest.raises(RecipeError, match="a cycle"):
        load_expected(path)


def test_a_bad_rule_in_the_base_names_the_base_file(tmp_path):
    with pytest.raises(RecipeError) as ei:
        load_expected(files(tmp_path, "schema = 1\n" + rule("a").replace('why = "w"\n', ""), HEAD))
    assert "base.toml" in ei.value.message and "why" in ei.value.message


@pytest.mark.parametrize("name", ["nemotron3_nano", "nemotron3_nano_4b"])
def test_the_miles_recipes_are_the_shared_rules_with_their_own_acceptance_reason(name):
    shared, own = load_expected(SHARED), load_expected(recipes_dir() / name / "expected_metrics.toml")
    assert [p.resolve() for p in own.extends] == [SHARED.resolve()]
    assert [r.name for r in own.rules] == [r.name for r in shared.rules]
    differ = [r.name for r, s in zip(own.rules, shared.rules, strict=True) if r != s]
    assert differ == ["logprob_diff_below_0.02"]
