"""`recipe diff`: provenance field by field and metrics per metric, on recorded run.json fixtures and
the metric controls (fast), and on two real tiny runs that differ in one flag (slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.errors import EXIT_MISSING, EXIT_USAGE
from runner.gate.expected import load_expected
from runner.gate.metrics import collect
from runner.paths import recipes_dir
from runner.records.diff import Side, argv_flags, diff

EVENTS = ROOT / "tests" / "data" / "events"
ID_A, ID_B = "20260821T100000Z-nemotron3_nano-default-aaaaaa", "20260821T110000Z-nemotron3_nano-default-bbbbbb"
NANO = recipes_dir() / "nemotron3_nano" / "expected_metrics.toml"


def record(run_dir: str, run_id: str, **changes) -> dict:
    rec = {
        "schema": 1, "status": "succeeded", "exit_code": 0, "recipe": "nemotron3_nano", "run_id": run_id,
        "run_dir": run_dir, "output_dir": f"{run_dir}/output", "cell": "default", "backend": "local",
        "image": "radixark/miles:v0.1.0@sha256:" + "c" * 64, "recipe_digest": "sha256:" + "d" * 64,
        "recipe_files": {"nemotron3_nano/run.sh": "1" * 64, "nemotron3_nano/model_args.txt": "2" * 64},
        "bundle": {"commit": "0123abc", "dirty": False, "source": "git"},
        "seeds": {"seed": "1234", "rollout_seed": "42"}, "deterministic": False, "determinism": "statistical",
        "nodes": 1, "gpus_per_node": 8, "inputs_dir": "/data/inputs",
        "argv": ["--tensor-model-parallel-size", "2", "--seed", "1234", "--save", f"{run_dir}/output/ckpt",
                 "--save-debug-event-data", f"{run_dir}/events", "--use-rollout-routing-replay"],
        "job_env": {"NCCL_NVLS_ENABLE": "0", "WANDB_API_KEY": "$WANDB_API_KEY", "CACHE": f"{run_dir}/output/c"},
        "script_env": {"RECIPE_SEED": "1234", "RECIPE_RUN_DIR": run_dir, "RECIPE_RAY_PORT": "6379"},
        "environment": {"OMP_NUM_THREADS": "4"},
        "inputs_verification": {"status": "ok", "data": {"manifest_sha256": "e" * 64, "files": 21, "bytes": 63}},
        "host": {"hostname": "node1", "gpus": ["NVIDIA H200"] * 8, "gpu_count": 8, "driver": "570.86.15",
                 "cpu": "x", "cpu_count": 128, "os": "Linux", "python": "3.11", "runner_version": "0.1.0"},
        "preflight_skipped": [], "started_at": "2026-08-21T10:00:00+00:00", "pid": 42,
    }
    for path, value in changes.items():
        cur = rec
        *head, last = path.split(".")
        for part in head:
            cur = cur[part]
        cur[last] = value
    return rec


def side(control: str, rec: dict) -> Side:
    return Side(label=control, record=rec, series=collect(EVENTS / control), run_dir=rec["run_dir"])


def test_identical_launches_differ_in_nothing_but_their_own_places_and_times():
    a = record("/runs/A", ID_A)
    b = record("/runs/B", ID_B, started_at="2026-08-22T00:00:00+00:00", pid=7, **{"script_env.RECIPE_RAY_PORT": "7000"})
    d = diff(side("healthy", a), side("healthy", b), load_expected(NANO))
    assert d["provenance"] == []
    assert all(m["identical"] for m in d["metrics"])


def test_each_provenance_difference_is_one_named_row():
    a = record("/runs/A", ID_A)
    b = record("/runs/B", ID_B, image="radixark/miles:v0.1.0@sha256:" + "f" * 64, **{
        "bundle.dirty": True, "recipe_files": {**a["recipe_files"], "nemotron3_nano/run.sh": "9" * 64},
        "argv": ["--tensor-model-parallel-size", "4", "--seed", "7", "--save", "/runs/B/output/ckpt",
                 "--save-debug-event-data", "/runs/B/events", "--deterministic-mode"],
        "job_env.NCCL_NVLS_ENABLE": "1", "seeds.seed": "7", "host.driver": "580.1", "preflight_skipped": ["gpus"],
        "inputs_verification.data.manifest_sha256": "0" * 64, "environment": {}})
    d = diff(side("healthy", a), side("healthy", b), load_expected(NANO))
    rows = {r["field"]: (r["a"], r["b"]) for r in d["provenance"]}
    assert rows == {
        "image": (a["image"], b["image"]),
        "bundle.dirty": (False, True),
        "seeds": ({"seed": "1234", "rollout_seed": "42"}, {"seed": "7", "rollout_seed": "42"}),
        "inputs_verification.data.manifest_sha256": ("e" * 64, "0" * 64),
        "host.driver": ("570.86.15", "580.1"),
        "preflight_skipped": ([], ["gpus"]),
        "recipe_files <RECIPE>/run.sh": ("1" * 64, "9" * 64),
        "job_env NCCL_NVLS_ENABLE": ("0", "1"),
        "environment OMP_NUM_THREADS": ("4", "<absent>"),
        "argv --tensor-model-parallel-size": ("2", "4"),
        "argv --seed": ("1234", "7"),
        "argv --use-rollout-routing-replay": ("", "<absent>"),
        "argv --deterministic-mode": ("<absent>", ""),
    }


def test_argv_flags():
    assert argv_flags(["x", "--a", "1", "2", "--b", "--c=3", "--a", "4"]) == {
        "": ["x"], "--a": ["1", "2", "4"], "--b": [], "--c": ["3"]}


def test_metrics_largest_relative_difference_and_first_step_out_of_band():
    rec = record("/r", "r")
    d = diff(side("slow_30pct", rec), side("healthy", rec), load_expected(NANO))
    by = {m["metric"]: m for m in d["metrics"]}
    st = by["perf/step_time"]
    assert st["max_rel_diff"] == pytest.approx(0.3) and not st["identical"]
    assert st["bands"] == [{"rule": "step_time_vs_reference", "bound": "median(x)/median(ref) over steps >= 1 <= 1.25",
                            "first_step_out": 1}]
    assert by["perf/tokens_per_gpu_per_sec"]["max_rel_diff"] == pytest.approx(1 - 1 / 1.3)
    assert by["train/train_rollout_logprob_abs_diff"]["identical"]
    assert by["train/train_rollout_logprob_abs_diff"]["bands"][0]["first_step_out"] is None
    d = diff(side("router_scale_1", rec), side("healthy", rec), load_expected(NANO))
    lp = {m["metric"]: m for m in d["metrics"]}["train/train_rollout_logprob_abs_diff"]
    assert lp["bands"][0] == {"rule": "logprob_diff_band", "bound": "|x-ref| <= max(0.2*|ref|, 0.002)",
                              "first_step_out": 0}
    assert lp["max_rel_diff"] > 15                                    # ~0.28 vs ~0.014
    # a run that stopped early leaves the band at its first missing step; its missing metrics are listed
    d = diff(side("stopped_after_6", rec), side("healthy", rec), load_expected(NANO))
    lp = {m["metric"]: m for m in d["metrics"]}["train/train_rollout_logprob_abs_diff"]
    assert lp["steps_a"] == 6 and lp["steps_only_b"] == 4 and lp["bands"][0]["first_step_out"] is not None


def run_dir(tmp_path: Path, control: str, name: str, rec: dict) -> Path:
    d = tmp_path / name
    shutil.copytree(EVENTS / control, d / "events")
    (d / "run.json").write_text(json.dumps(rec))
    return d


def test_cli_table_and_json(tmp_path):
    a = run_dir(tmp_path, "healthy", "a", record("/runs/A", ID_A))
    b = run_dir(tmp_path, "slow_30pct", "b", record("/runs/B", ID_B, **{"argv": ["--seed", "7"]}))
    r = recipe("diff", str(a), str(b))
    assert r.returncode == 0, r.stderr
    assert "provenance: " in r.stdout and "argv --seed" in r.stdout and "perf/step_time" in r.stdout
    assert r.stdout.splitlines()[:2] == [f"base:  {a}", f"other: {b}"]
    # git's order: `diff BASE OTHER` compares OTHER (side a) with BASE (side b, the baseline)
    r = recipe("diff", str(a), str(b), "--json")
    d = json.loads(r.stdout)
    assert (d["b"]["label"], d["a"]["label"]) == (str(a), str(b))
    assert {x["field"]: (x["b"], x["a"]) for x in d["provenance"]}["argv --seed"] == ("1234", "7")
    assert {x["field"] for x in d["provenance"]} >= {"argv --seed", "argv --tensor-model-parallel-size"}
    st = {m["metric"]: m for m in d["metrics"]}["perf/step_time"]
    assert st["bands"][0]["first_step_out"] == 1


def test_cli_against_the_blessed_reference(tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(ROOT / "recipes", root / "recipes", ignore=shutil.ignore_patterns("reference_metrics.jsonl"))
    env = clean_env(RECIPE_BUNDLE_ROOT=str(root))
    from runner.recipe import load_recipe
    from runner.records.record import recipe_file_hashes

    files = recipe_file_hashes(load_recipe("nemotron3_nano"))
    good = run_dir(tmp_path, "healthy", "good", record(str(tmp_path / "good"), ID_A, recipe_files=files,
                                                       preflight=[{"name": "gpus", "status": "ok"}]))
    slow = run_dir(tmp_path, "slow_30pct", "slow", record(str(tmp_path / "slow"), ID_B, recipe_files=files,
                                                          **{"host.driver": "580.1"}))
    r = recipe("diff", str(slow), env=env)
    assert r.returncode == EXIT_MISSING and "no blessed reference" in r.stderr and r.stderr.count("\n") == 1
    assert recipe("bless", str(good), env=env).returncode == 0
    r = recipe("diff", str(slow), "--json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["b"]["label"].startswith("reference of nemotron3_nano")
    assert {x["field"]: x["b"] for x in d["provenance"]} == {"host.driver": "570.86.15"}
    assert {m["metric"]: m for m in d["metrics"]}["perf/step_time"]["bands"][0]["first_step_out"] == 1


def test_cli_bad_input_is_one_line(tmp_path):
    a = run_dir(tmp_path, "healthy", "a", record("/runs/A", ID_A))
    (a / "run.json").write_bytes(b"\xff")
    r = recipe("diff", str(a), str(a))
    assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1 and "not UTF-8" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = recipe("diff", str(empty), str(EVENTS / "healthy"), "--recipe", "nemotron3_nano")
    assert r.returncode == EXIT_MISSING and r.stderr.count("\n") == 1
    r = recipe("diff", str(EVENTS / "healthy"))
    assert r.returncode == EXIT_USAGE and "--recipe NAME" in r.stderr


# -- two real runs ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_real_tiny_runs_that_differ_in_seed(tmp_path):
    pytest.importorskip("trl")
    runs = {}
    for seed in ("1234", "7"):
        p = recipe("run", "nemotron3_nano_tiny", "--runs-dir", str(tmp_path / seed), "--seed", seed,
                   env=clean_env(), cwd=tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        (runs[seed],) = list((tmp_path / seed).iterdir())
    r = recipe("diff", str(runs["1234"]), str(runs["7"]), "--json", cwd=tmp_path)   # BASE OTHER
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # one flag differs, and so what it sets: nothing else in the provenance
    assert {x["field"]: (x["a"], x["b"]) for x in d["provenance"]} == {
        "seeds": ({"seed": "7", "rollout_seed": "42"}, {"seed": "1234", "rollout_seed": "42"}),
        "script_env RECIPE_SEED": ("7", "1234"),
        "argv --seed": ("7", "1234"),
    }
    metrics = {m["metric"]: m for m in d["metrics"]}
    # another seed samples other answers: the reward differs, and the reward band says from which step
    reward = metrics["rollout/raw_reward"]
    assert not reward["identical"] and reward["max_rel_diff"] > 0
    assert [b["rule"] for b in reward["bands"]] == ["reward_band"]
    assert all("only_in" not in m for m in metrics.values())
    text = recipe("diff", str(runs["1234"]), str(runs["7"]), cwd=tmp_path).stdout
    assert "argv --seed" in text and "3 field(s) differ" in text


def test_a_copied_recipe_with_one_changed_flag_differs_in_that_flag_first():
    """A copy of a recipe under another name: its files are matched by their path inside the recipe, so
    the one real change (--lr) is the only difference, first, and the summary line names it."""
    from runner.records.diff import summary

    a = record("/runs/A", ID_A)
    b = record("/runs/B", ID_B, recipe="nemotron3_nano_copy", recipe_digest="sha256:" + "f" * 64,
               recipe_files={"nemotron3_nano_copy/run.sh": "1" * 64, "nemotron3_nano_copy/model_args.txt": "2" * 64},
               argv=[*a["argv"], "--lr", "2e-6"])
    b["argv"] = [w.replace("/runs/A", "/runs/B") for w in b["argv"]]
    d = diff(side("healthy", b), side("healthy", a), load_expected(NANO))
    fields = [r["field"] for r in d["provenance"]]
    assert fields[0] == "argv --lr" and not any(f.startswith("recipe_files") for f in fields), fields
    assert set(fields) == {"argv --lr", "recipe", "recipe_digest"}
    assert summary(d["provenance"]).startswith("argv 1 (--lr)")
