"""`recipe report`: the page's provenance header from run.json, and plots with axis labels, units and
the run's id (read off the real matplotlib figures before they are closed)."""

from __future__ import annotations

import html
import json
import shutil

import pytest
from conftest import ROOT, recipe

from runner.gate.expected import load_expected
from runner.gate.units import axis_label

EVENTS = ROOT / "tests" / "data" / "events"
RUN_ID = "20260821T100000Z-nemotron3_nano-default-abcdef"
RECORD = {"schema": 1, "status": "succeeded", "exit_code": 0, "recipe": "nemotron3_nano", "run_id": RUN_ID,
          "cell": "default", "backend": "local", "image": "radixark/miles:v0.1.0@sha256:" + "c" * 64,
          "bundle": {"commit": "0123abc4567", "dirty": True}, "seeds": {"seed": "1234", "rollout_seed": "42"},
          "started_at": "2026-08-21T10:00:00+00:00", "ended_at": "2026-08-21T12:00:00+00:00",
          "host": {"hostname": "node1", "gpus": ["NVIDIA H200"] * 8, "driver": "570.86.15"},
          "packages": {"torch": "2.8.0", "sglang": "0.5.4"}}


def run_dir(tmp_path, record=RECORD):
    d = tmp_path / "run"
    shutil.copytree(EVENTS / "healthy", d / "events")
    (d / "run.json").write_text(json.dumps(record))
    return d


def test_the_page_starts_with_the_runs_provenance(tmp_path):
    pytest.importorskip("matplotlib")
    d = run_dir(tmp_path)
    r = recipe("report", str(d))
    assert r.returncode == 0, r.stderr
    page = html.unescape((d / "report" / "index.html").read_text())
    head = page[page.index("<h2>Provenance"):page.index("<table><tr><th>rule")]
    for words in (RUN_ID, "nemotron3_nano / default (local backend)", RECORD["image"],
                  "0123abc4567 (dirty: uncommitted changes)", "seed=1234, rollout_seed=42",
                  "2026-08-21T10:00:00+00:00 to 2026-08-21T12:00:00+00:00", "node1: 8 x NVIDIA H200, driver 570.86.15",
                  "sglang==0.5.4, torch==2.8.0"):
        assert words in head, words


def test_without_packages_or_run_json_the_page_says_only_what_it_knows(tmp_path):
    pytest.importorskip("matplotlib")
    d = run_dir(tmp_path, {k: v for k, v in RECORD.items() if k not in ("packages", "bundle")})
    assert recipe("report", str(d)).returncode == 0
    page = (d / "report" / "index.html").read_text()
    assert "<th>packages</th>" not in page and "<th>bundle commit</th><td><code>not recorded</code>" in page
    r = recipe("report", str(EVENTS / "healthy"), "--recipe", "nemotron3_nano", "--out", str(tmp_path / "bare"))
    assert r.returncode == 0, r.stderr
    assert "no run.json: provenance unknown" in (tmp_path / "bare" / "index.html").read_text()


def test_every_plot_has_axis_labels_with_units_and_the_run_id(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runner.gate import evaluate as gate
    from runner.gate.metrics import collect
    from runner.gate.report import write_report
    from runner.recipe import load_recipe

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    exp = load_expected(load_recipe("nemotron3_nano").path("expected_metrics"))
    series = collect(EVENTS / "healthy")
    write_report(exp, series, gate.evaluate(exp, series), tmp_path / "out", title="x", run=RECORD)
    labels = {}
    for fig in figures:
        (ax,) = fig.axes
        assert ax.get_xlabel() == "training step"
        assert [t.get_text() for t in fig.texts] == [f"run {RUN_ID}"]
        labels[ax.get_title().splitlines()[0]] = ax.get_ylabel()
    assert set(labels) == set(exp.metrics())
    assert labels["perf/step_time"] == "perf/step_time (s)"
    assert labels["rollout/response_len/mean"] == "rollout/response_len/mean (tokens)"
    assert labels["train/train_rollout_logprob_abs_diff"] == "train/train_rollout_logprob_abs_diff (nats)"
    assert labels["train/loss"] == "train/loss"          # no unit is guessed


def test_units_only_where_certain():
    assert axis_label("perf/tokens_per_gpu_per_sec") == "perf/tokens_per_gpu_per_sec (tokens/s per GPU)"
    assert axis_label("perf/actor_train_tok_per_s") == "perf/actor_train_tok_per_s (tokens/s)"
    assert axis_label("derived/zero_std_percentage") == "derived/zero_std_percentage"   # logged as a fraction
