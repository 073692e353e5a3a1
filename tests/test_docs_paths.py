"""Every file of the project the README and docs/ name exists: a move (runner/launch/plan.py to
runner/plan/dryrun.py) cannot leave a reader following a path that is gone."""

from __future__ import annotations

import re

from conftest import ROOT

PATH = re.compile(r"(?<![\w/.-])((?:runner|recipes|tests|tools|bench|ci|docker|docs)/[\w./<>*{},-]*[\w/])")


def named_paths(text: str) -> list[str]:
    """Paths named in text; placeholders (`recipes/NAME/`, `<family>`, globs) are not paths."""
    return [m for m in PATH.findall(text)
            if not any(c in m for c in "<>*{}") and not any(part.isupper() for part in m.split("/"))]


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for rel in named_paths(doc.read_text()):
            if not (ROOT / rel.rstrip(".,")).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {rel}")
    assert missing == [], "\n".join(missing)


def test_a_moved_path_would_be_found():
    assert named_paths("see `runner/launch/plan.py` and runner/plan/dryrun.py.") == [
        "runner/launch/plan.py", "runner/plan/dryrun.py"]
    assert not (ROOT / "runner/launch/plan.py").exists()
