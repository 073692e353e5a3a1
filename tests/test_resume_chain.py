"""Fast parts of resume: which checkpoint each adapter's rule picks, and a resumed run's metrics
read as one chain (each step once, the parent found only as a sibling directory)."""

from __future__ import annotations

import json
from pathlib import Path

from runner.frameworks.miles import ADAPTER as MILES
from runner.frameworks.trl import ADAPTER as TRL
from runner.gate import metrics


def test_trl_rule_takes_the_newest_marked_checkpoint_and_names_newer_unmarked_ones(tmp_path):
    root = tmp_path / "trainer"
    for step in (2, 4, 6):
        (root / f"checkpoint-{step}").mkdir(parents=True)
    for step in (2, 4):
        (root / f"checkpoint-{step}" / "complete").write_text(f"{step}\n")
    assert TRL.checkpoints(tmp_path) == (root / "checkpoint-4", [root / "checkpoint-6"])
    (root / "checkpoint-4" / "complete").unlink()
    (root / "checkpoint-4" / "complete").symlink_to(root / "checkpoint-2" / "complete")  # a link is no marker
    assert TRL.checkpoints(tmp_path) == (root / "checkpoint-2", [root / "checkpoint-6", root / "checkpoint-4"])
    assert TRL.checkpoints(tmp_path / "nothing") == (None, [])


def test_miles_rule_follows_megatrons_tracker(tmp_path):
    root = tmp_path / "checkpoints"
    for n in (19, 39):
        (root / f"iter_{n:07d}").mkdir(parents=True)
    assert MILES.checkpoints(tmp_path) == (None, [root / "iter_0000039", root / "iter_0000019"])
    (root / "latest_checkpointed_iteration.txt").write_text("19\n")
    assert MILES.checkpoints(tmp_path) == (root / "iter_0000019", [root / "iter_0000039"])
    (root / "latest_checkpointed_iteration.txt").write_text("release\n")
    assert MILES.checkpoints(tmp_path)[0] is None


def write_run(d: Path, steps: range, value: float, parent: str | None = None) -> None:
    (d / "events").mkdir(parents=True)
    lines = [{"type": "metric", "metrics": {"train/step": s, "train/loss": value + s}, "source": {"component": "actor"}}
             for s in steps]
    (d / "events" / "actor.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rec = {"status": "succeeded"}
    if parent is not None:
        rec["resume_of"] = {"run_id": parent, "run_dir": f"/elsewhere/{parent}"}
    (d / "run.json").write_text(json.dumps(rec))


def test_a_resumed_run_reads_as_one_chain_with_each_step_once(tmp_path):
    write_run(tmp_path / "a", range(0, 5), 0.0)           # ran past its checkpoint at 3
    write_run(tmp_path / "b", range(3, 7), 100.0, "a")    # resumed at 3, stopped again
    write_run(tmp_path / "c", range(6, 10), 1000.0, "b")  # resumed at 6
    s = metrics.collect(tmp_path / "c")
    assert s.values["train/loss"] == {0: 0.0, 1: 1.0, 2: 2.0, 3: 103.0, 4: 104.0, 5: 105.0,
                                      6: 1006.0, 7: 1007.0, 8: 1008.0, 9: 1009.0}
    assert s.extra["resumed_from"] == ["a", "b"]
    assert metrics.collect(tmp_path / "a").values["train/loss"] == {s: float(s) for s in range(5)}


def test_a_parent_is_only_a_sibling_directory_never_a_link(tmp_path):
    outside = tmp_path / "outside"
    write_run(outside / "a", range(0, 3), 0.0)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a").symlink_to(outside / "a")
    write_run(runs / "b", range(3, 6), 100.0, "a")
    assert metrics.resumed_chain(runs / "b") == []
    assert sorted(metrics.collect(runs / "b").values["train/loss"]) == [3, 4, 5]
