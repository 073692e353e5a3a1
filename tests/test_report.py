"""`recipe report`: the page's provenance header from run.json, and plots with axis labels, units and
the run's id (read off the real matplotlib figures before they are closed)."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

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
          "packages": {"interpreter": "/usr/bin/python3", "versions": {"torch": "2.8.0", "sglang": "0.5.4",
                                                                      "flash-attn": None}}}


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
                  "<th>duration</th><td><code>2:00:00</code>"):
        assert words in head, words
    # packages: a table of their own, one row each, never a dict's repr
    raw = (d / "report" / "index.html").read_text()
    assert "<tr><td><code>torch</code></td><td><code>2.8.0</code></td></tr>" in raw
    assert "<tr><td><code>flash-attn</code></td><td><code>not installed</code></td></tr>" in raw
    assert "{" not in page[page.index("<h2>Packages"):page.index("<table><tr><th>rule")]


def test_without_packages_or_run_json_the_page_says_only_what_it_knows(tmp_path):
    pytest.importorskip("matplotlib")
    d = run_dir(tmp_path, {k: v for k, v in RECORD.items() if k not in ("packages", "bundle")})
    assert recipe("report", str(d)).returncode == 0
    page = (d / "report" / "index.html").read_text()
    assert "Packages" not in page and "<th>bundle commit</th><td><code>not recorded</code>" in page
    r = recipe("report", str(EVENTS / "healthy"), "--recipe", "nemotron3_nano", "--out", str(tmp_path / "bare"))
    assert r.returncode == 0, r.stderr
    assert "no run.json: provenance unknown" in (tmp_path / "bare" / "index.html").read_text()


def report_figures(name: str, events: Path, tmp_path, monkeypatch) -> tuple:
    """The recipe's expected metrics and every figure write_report drew for the events' run."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runner.gate import evaluate as gate
    from runner.gate.metrics import collect
    from runner.gate.report import write_report
    from runner.recipe import load_recipe

    figures: list = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    exp = load_expected(load_recipe(name).path("expected_metrics"))
    series = collect(events)
    write_report(exp, series, gate.evaluate(exp, series), tmp_path / "out", title="x", run=RECORD)
    return exp, figures


def test_every_plot_has_axis_labels_with_units_and_the_run_id(tmp_path, monkeypatch):
    exp, figures = report_figures("nemotron3_nano", EVENTS / "healthy", tmp_path, monkeypatch)
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


def test_the_y_axis_is_the_datas_and_a_bound_off_it_is_marked_at_the_edge(tmp_path, monkeypatch):
    """Issue 28 §6: a bound of 100 over values near 1 used to set the axis, flattening the data."""
    exp, figures = report_figures("nemotron3_nano_tiny", ROOT / "tests" / "data" / "events" / "healthy", tmp_path,
                                  monkeypatch)
    off_scale = 0
    for fig in figures:
        (ax,) = fig.axes
        ys = [y for line in ax.lines[:1] for y in line.get_ydata() if y == y]   # the run's values, NaN left out
        if not ys or ax.get_title().startswith(("perf/", "rollout/rewards")):
            continue
        bottom, top = ax.get_ylim()
        assert bottom <= min(ys) and max(ys) <= top, ax.get_title()
        if max(ys) > min(ys):   # (a flat series is drawn against its bounds)
            assert top - bottom <= 1.5 * (max(ys) - min(ys)), (ax.get_title(), bottom, top)   # the data fill it
        off_scale += sum("off scale" in t.get_text() for t in ax.texts)
    assert off_scale > 0   # e.g. grad_norm's x < 100: an arrow at the top edge, not the axis
