"""The shape of the house: the generic runner names no model family; what one family needs lives
with the recipes (recipes/lib/families/), behind the interface runner/model/family.py loads. No
import climbs to a higher layer and no name is reached through a module alias (tools/house.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("house", ROOT / "tools" / "house.py")
house = sys.modules.setdefault("house", importlib.util.module_from_spec(_spec))  # dataclasses look it up
_spec.loader.exec_module(house)
FAMILY_WORDS = house.FAMILY_WORDS
# miles' own log lines, quoted verbatim so the watcher can match them (they name miles' plugin)
QUOTED = {ROOT / "runner" / "frameworks" / "miles_log.py"}


def test_no_runner_module_names_a_model_family():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in sorted((ROOT / "runner").rglob("*.py")) if p not in QUOTED
            for i, line in enumerate(p.read_text().splitlines(), 1) if FAMILY_WORDS.search(line)]
    assert hits == [], "\n".join(hits)


def test_the_family_module_is_where_the_family_lives():
    family = ROOT / "recipes" / "lib" / "families" / "nemotron_h"
    assert any(FAMILY_WORDS.search(p.read_text()) for p in family.glob("*.py"))


def test_no_import_climbs_to_a_higher_layer():
    assert house.climbing(ROOT) == []


def test_every_runner_module_has_a_layer():
    assert house.unplaced(ROOT) == []


def test_no_name_is_reached_through_a_module_alias():
    files = [*sorted((ROOT / "runner").rglob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]
    assert house.reached_through(ROOT, files) == []


def _tree(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


LOW_HIGH = [("low", ("runner.low",)), ("high", ("runner.high",))]


def test_a_planted_import_upward_is_found_even_inside_a_function_or_type_checking(tmp_path):
    root = _tree(tmp_path, {
        "runner/__init__.py": "", "runner/high.py": "X = 1\n",
        "runner/low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runner.high import X\n"
                         "def f():\n    from runner import high\n    return high.X\n"})
    got = house.climbing(root, LOW_HIGH)
    assert [g.split(":")[1] for g in got] == ["3", "5"] and all("(low) -> runner.high (high)" in g for g in got)
    assert house.climbing(root, list(reversed(LOW_HIGH))) == []


def test_a_planted_reach_through_is_found(tmp_path):
    root = _tree(tmp_path, {
        "runner/__init__.py": "", "runner/errors.py": "class UsageError(Exception): ...\n",
        "runner/low.py": "from runner.errors import UsageError\nOWN = 1\n",
        "runner/high.py": "from runner import low\nraise low.UsageError(low.OWN)\n"})
    got = house.reached_through(root, [root / "runner" / "high.py"])
    assert got == ["runner/high.py:2: low.UsageError is imported into runner.low, not defined there"]


def test_the_house_report_runs_and_says_zero():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "house.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imports climbing to a higher layer: 0" in r.stdout and "reached through a module alias: 0" in r.stdout
