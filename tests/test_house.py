"""The shape of the house: the generic runner names no model family; what one family needs lives
with the recipes (recipes/lib/families/), behind the interface runner/model/family.py loads."""

from __future__ import annotations

import re

from conftest import ROOT

FAMILY_WORDS = re.compile(r"nemotron|mamba|hybrid[_ ]override|hybrid pattern", re.I)
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
