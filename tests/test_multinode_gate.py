"""A multi-node run whose train/* events stayed on another node's disk: the gate says where they went."""

from __future__ import annotations

from runner.frameworks.miles import ADAPTER as MILES
from runner.gate.metrics import Series
from runner.plan.options import RunOptions
from runner.plan.render import build_launch
from runner.recipe import load_recipe


def missing_train_metrics(launch, series):
    notes = MILES.gate_notes(launch, series)
    return notes[0] if notes else None


def launch(tmp_path, nodes: int):
    opts = RunOptions.resolve(load_recipe("nemotron3_nano"), {"nodes": nodes, "inputs_dir": tmp_path / "in"})
    return build_launch(opts, run_id="r", run_dir=tmp_path / "run", backend="local")


ROLLOUT_ONLY = Series(values={"rollout/raw_reward": {0: 0.1, 1: 0.2}, "perf/step_time": {0: 9.0}})
WITH_TRAIN = Series(values={**ROLLOUT_ONLY.values, "train/loss": {0: 0.01}})


def test_two_nodes_without_train_metrics_names_the_rank_and_the_directory(tmp_path):
    note = missing_train_metrics(launch(tmp_path, 2), ROLLOUT_ONLY)
    assert note is not None and "\n" not in note
    assert "no train/* metric in " + str(tmp_path / "run" / "events") in note
    assert "last pipeline stage (PP=2)" in note and "2-node run" in note and "--runs-dir" in note


def test_train_metrics_present_or_one_node_says_nothing(tmp_path):
    assert missing_train_metrics(launch(tmp_path, 2), WITH_TRAIN) is None
    assert missing_train_metrics(launch(tmp_path, 1), ROLLOUT_ONLY) is None
