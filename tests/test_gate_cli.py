"""`recipe check`, `recipe bless`, `recipe report` run for real as subprocesses on the controls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.errors import EXIT_FAIL, EXIT_MISSING, EXIT_REFUSED, EXIT_USAGE

EVENTS = ROOT / "tests" / "data" / "events"
STDOUT = ROOT / "tests" / "data" / "stdout"


def nano_files() -> dict[str, str]:
    from runner.recipe import load_recipe
    from runner.records.record import recipe_file_hashes

    return recipe_file_hashes(load_recipe("nemotron3_nano"))


def run_dir(tmp_path: Path, control: str, status: str = "succeeded", name: str = "run", **fields) -> Path:
    """A run directory as `recipe run` leaves it: run.json, events/ (and no metrics.jsonl yet)."""
    d = tmp_path / name
    shutil.copytree(EVENTS / control, d / "events")
    files = nano_files()
    from runner.records.record import recipe_digest

    (d / "run.json").write_text(json.dumps({
        "schema": 1, "status": status, "recipe": "nemotron3_nano", "run_id": f"20260821T100000Z-{control}",
        "cell": "default", "image": "radixark/miles:v0.1.0@sha256:cd40db92", "recipe_digest": recipe_digest(files),
        "recipe_files": files, "bundle": {"commit": "0123abc", "dirty": False},
        "seeds": {"seed": "1234", "rollout_seed": "42"}, "preflight_skipped": [],
        "preflight": [{"name": "gpus", "status": "ok"}, {"name": "inputs", "status": "ok"}], **fields}))
    return d


@pytest.fixture
def bundle(tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of the recipes tree, so bless can write a reference without touching the checkout."""
    root = tmp_path / "bundle"
    shutil.copytree(ROOT / "recipes", root / "recipes", ignore=shutil.ignore_patterns("reference_metrics.jsonl"))
    return root, clean_env(RECIPE_BUNDLE_ROOT=str(root))


def test_check_passes_healthy_and_fails_router_scale(tmp_path):
    wide = clean_env(COLUMNS="300")   # one line per rule, `why` beside it (narrower: under it)
    ok = recipe("check", str(EVENTS / "healthy"), "--recipe", "nemotron3_nano", env=wide)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "gate PASSED" in ok.stdout
    header = ok.stdout.splitlines()[0].split()
    assert header == ["rule", "observed", "bound", "verdict", "why"]
    bad = recipe("check", str(EVENTS / "router_scale_1"), "--recipe", "nemotron3_nano", env=wide)
    assert bad.returncode == EXIT_FAIL
    row = next(line for line in bad.stdout.splitlines() if line.startswith("logprob_diff_below_0.02"))
    assert "FAIL" in row and "x < 0.02 every step" in row and "router scale" in row


@pytest.mark.parametrize("control", ["nan_grad_norm", "stopped_after_6"])
def test_check_fails_broken_controls(control):
    r = recipe("check", str(EVENTS / control), "--recipe", "nemotron3_nano", "--json")
    assert r.returncode == EXIT_FAIL
    d = json.loads(r.stdout)
    failed = {row["rule"] for row in d["rows"] if row["verdict"] == "fail"}
    assert ("grad_norm_finite" in failed) if control == "nan_grad_norm" else ("all_train_steps" in failed)


def test_check_stdout_log_fallback():
    r = recipe("check", str(STDOUT / "healthy"), "--recipe", "nemotron3_nano", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["series_source"] == "stdout"
    r = recipe("check", str(STDOUT / "nan_grad_norm" / "logs" / "run.log"), "--recipe", "nemotron3_nano")
    assert r.returncode == EXIT_FAIL


def test_check_leaves_what_the_run_recorded_and_writes_beside_it_only_with_write(tmp_path):
    d = run_dir(tmp_path, "nan_grad_norm")
    recorded = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    (d / "gate.json").write_text('{"status": "passed", "as": "recorded by recipe run"}\n')
    (d / "metrics.jsonl").write_text('{"as": "recorded by recipe run"}\n')
    recorded = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    r = recipe("check", str(d))
    assert r.returncode == EXIT_FAIL
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == recorded    # printed only
    r = recipe("check", str(d), "--write")
    assert r.returncode == EXIT_FAIL
    assert "the run's gate.json and run.json are unchanged" in r.stderr
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name in recorded} == recorded
    (gate_file,) = d.glob("gate.check-*.json")
    (metrics_file,) = d.glob("metrics.check-*.jsonl")
    assert gate_file.name[len("gate."):-len(".json")] == metrics_file.name[len("metrics."):-len(".jsonl")]
    gate = json.loads(gate_file.read_text())
    assert gate["passed"] is False and gate["expected"].endswith("nemotron3_nano/expected_metrics.toml")
    lines = metrics_file.read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "recipe-metrics"
    assert {"metric": "train/grad_norm", "step": 5, "step_key": "train/step", "value": None,
            "nonfinite": "nan"} in [json.loads(x) for x in lines[1:]]
    r = recipe("check", str(EVENTS / "healthy" / "rollout_manager.jsonl"), "--recipe", "nemotron3_nano", "--write")
    assert r.returncode == EXIT_USAGE and "not a run directory" in r.stderr


def test_check_usage_errors_are_one_line(tmp_path):
    r = recipe("check", str(EVENTS / "healthy"))
    assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1 and "--recipe NAME" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = recipe("check", str(empty), "--recipe", "nemotron3_nano")
    assert r.returncode == EXIT_MISSING and "no metrics found" in r.stderr
    bad = tmp_path / "expected.toml"
    bad.write_text('schema = 1\n[[rule]]\nname = "vacuous"\nkind = "bound"\nmetric = "train/pg_clipfrac"\n'
                   'le = 1.0\nwhy = "w"\nevidence = "e"\n')
    r = recipe("check", str(EVENTS / "healthy"), "--expected", str(bad))
    assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1
    assert f"{bad}: rule 'vacuous': field 'le': cannot fail" in r.stderr
    r = recipe("check", str(EVENTS / "healthy"), "--recipe", "no_such_recipe")
    assert r.returncode == EXIT_USAGE and "unknown recipe" in r.stderr


def test_bless_refuses_failing_runs_then_blesses_a_healthy_one(tmp_path, bundle):
    root, env = bundle
    ref = root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl"
    r = recipe("bless", str(run_dir(tmp_path, "router_scale_1", name="broken")), env=env)
    assert r.returncode == EXIT_REFUSED and "refusing to bless" in r.stderr and not ref.exists()
    r = recipe("bless", str(run_dir(tmp_path, "healthy", status="failed", name="failed")), env=env)
    assert r.returncode == EXIT_REFUSED and "'failed'" in r.stderr and not ref.exists()

    good = run_dir(tmp_path, "healthy", name="good")
    r = recipe("bless", str(good), env=env)
    assert r.returncode == 0, r.stderr
    header = json.loads(ref.read_text().splitlines()[0])
    prov = header["provenance"]
    assert prov["run_id"] == "20260821T100000Z-healthy" and prov["bundle"]["commit"] == "0123abc"
    assert prov["image"].startswith("radixark/miles:v0.1.0@sha256:") and prov["cell"] == "default"

    # now the bands hold: a healthy run of another seed passes them, the router-scale run fails them
    r = recipe("check", str(EVENTS / "nan_grad_norm"), "--recipe", "nemotron3_nano", "--json", env=env)
    rows = {row["rule"]: row["verdict"] for row in json.loads(r.stdout)["rows"]}
    assert rows["logprob_diff_band"] == "pass" and rows["response_len_band"] == "pass"
    r = recipe("check", str(EVENTS / "router_scale_1"), "--recipe", "nemotron3_nano", "--json", env=env)
    d = json.loads(r.stdout)
    rows = {row["rule"]: row["verdict"] for row in d["rows"]}
    assert rows["logprob_diff_band"] == "fail"
    assert d["reference"]["run_id"] == "20260821T100000Z-healthy"


def test_report_writes_a_png_per_gated_metric_and_an_index(tmp_path):
    out = tmp_path / "report"
    r = recipe("report", str(EVENTS / "nan_grad_norm"), "--recipe", "nemotron3_nano", "--out", str(out))
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["derived_zero_std_percentage.png", "perf_actor_train_tok_per_s.png", "perf_step_time.png",
                    "perf_tokens_per_gpu_per_sec.png", "rollout_raw_reward.png", "rollout_response_len_mean.png",
                    "train_grad_norm.png", "train_loss.png", "train_pg_clipfrac.png", "train_ppo_kl.png",
                    "train_train_rollout_logprob_abs_diff.png"]
    for p in out.glob("*.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page = (out / "index.html").read_text()
    assert "gate FAILED" in page and page.count("<img ") == len(pngs)
    assert "grad_norm_finite" in page and ">FAIL<" in page


def test_bless_replace_rebaselines_a_run_outside_the_old_bands(tmp_path, bundle):
    root, env = bundle
    ref = root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl"
    assert recipe("bless", str(run_dir(tmp_path, "healthy", name="first")), env=env).returncode == 0
    # a healthy run whose responses are 1.5x longer (say, a new image): passes every bound, fails the band
    longer = run_dir(tmp_path, "healthy", name="longer")
    events = longer / "events" / "rollout_manager.jsonl"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    for e in lines:
        e["metrics"]["rollout/response_len/mean"] *= 1.5
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    first = ref.read_bytes()
    # without --replace an existing reference stays, whatever the run
    r = recipe("bless", str(longer), env=env)
    assert r.returncode == EXIT_REFUSED and r.stderr.count("\n") == 1
    assert "already has a reference" in r.stderr and "blessed from 20260821T100000Z-healthy" in r.stderr
    assert ref.read_bytes() == first and not (ref.parent / "reference_history").exists()
    r = recipe("bless", str(longer), "--replace", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(ref.read_text().splitlines()[0])["provenance"]["run_dir"].endswith("longer")
    # ... and the one it replaced is kept, whole, under its replacement time and run id
    (kept,) = (ref.parent / "reference_history").glob("*/reference_metrics.jsonl")
    assert kept.read_bytes() == first and kept.parent.name.endswith("-20260821T100000Z-healthy")
    assert str(kept) in r.stdout
    # a run recorded before the bless is not made stale by the history (it is no launch file)
    from runner.records.record import changed_recipe_files

    assert changed_recipe_files({}, {f"nemotron3_nano/reference_history/{kept.parent.name}/reference_metrics.jsonl":
                                     "x"}) == []


# -- bless only what can be trusted (issue 14, "Bless") ---------------------------------------------

def test_bless_refuses_what_is_not_a_trusted_recorded_run(tmp_path, bundle):
    root, env = bundle
    ref = root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl"

    bare = tmp_path / "bare"                      # events but no run.json
    shutil.copytree(EVENTS / "healthy", bare / "events")
    r = recipe("bless", str(bare), "--recipe", "nemotron3_nano", env=env)
    assert r.returncode == EXIT_REFUSED and r.stderr.count("\n") == 1 and "no run.json" in r.stderr

    no_status = run_dir(tmp_path, "healthy", name="no_status")
    rec = json.loads((no_status / "run.json").read_text())
    del rec["status"]
    (no_status / "run.json").write_text(json.dumps(rec))
    r = recipe("bless", str(no_status), env=env)
    assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1 and "field 'status' missing" in r.stderr

    skipped = run_dir(tmp_path, "healthy", name="skipped", preflight_skipped=["gpus", "inputs"],
                      preflight=[{"name": "gpus", "status": "skipped"}, {"name": "inputs", "status": "skipped"}])
    r = recipe("bless", str(skipped), env=env)
    assert r.returncode == EXIT_REFUSED and "skipped: gpus, inputs" in r.stderr

    # run.sh edited after the run: the recipe is not the one that ran
    run_sh = root / "recipes" / "nemotron3_nano" / "run.sh"
    run_sh.write_text(run_sh.read_text() + "# edited\n")
    r = recipe("bless", str(run_dir(tmp_path, "healthy", name="edited")), env=env)
    assert r.returncode == EXIT_REFUSED and "changed since the run (nemotron3_nano/run.sh)" in r.stderr
    r = recipe("bless", str(skipped), "--allow-skipped-preflight", env=env)
    assert r.returncode == EXIT_REFUSED and "run.sh" in r.stderr        # the flag does not excuse an edit
    assert not ref.exists()


def test_bless_with_skipped_preflight_only_by_flag_and_the_reference_says_so(tmp_path, bundle):
    root, env = bundle
    ref = root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl"
    skipped = run_dir(tmp_path, "healthy", name="skipped", preflight_skipped=["gpus"])
    r = recipe("bless", str(skipped), "--allow-skipped-preflight", env=env)
    assert r.returncode == 0, r.stderr
    prov = json.loads(ref.read_text().splitlines()[0])["provenance"]
    assert prov["allowed_skipped_preflight"] is True and prov["preflight_skipped"] == ["gpus"]
    assert prov["recipe_files"] == nano_files()


@pytest.mark.parametrize("content, words", [
    (b'{"status": "succ\xff"}', "not UTF-8 (byte 16)"),
    (b'[1, 2]', "expected a JSON object, got list"),
    (b'{"status": "succeeded", "recipe": "nemotron3_nano", "recipe_files": [1]}',
     "field 'recipe_files': expected an object, got a list"),
    (b'{"status": "succeeded", "recipe": "nemotron3_nano", "argv": "--seed 1"}',
     "field 'argv': expected a list, got a string"),
    (b'{"status": 3}', "field 'status': expected a string, got an integer"),
])
def test_malformed_run_json_is_one_line_exit_2(tmp_path, bundle, content, words):
    _, env = bundle
    d = run_dir(tmp_path, "healthy")
    (d / "run.json").write_bytes(content)
    for verb in ("bless", "check", "replay"):
        r = recipe(verb, str(d), env=env)
        assert r.returncode == EXIT_USAGE, (verb, r.stderr)
        assert r.stderr.count("\n") == 1 and words in r.stderr and str(d / "run.json") in r.stderr


# -- speed in the gate (issue 15, section 2) ---------------------------------------------------------

def test_a_30_percent_slower_run_fails_the_gate_like_a_logprob_drift(tmp_path, bundle):
    root, env = bundle
    # before a reference exists the speed rules are unreferenced and decide nothing
    r = recipe("check", str(EVENTS / "slow_30pct"), "--recipe", "nemotron3_nano", env=env)
    assert r.returncode == 0, r.stdout
    assert recipe("bless", str(run_dir(tmp_path, "healthy", name="good")), env=env).returncode == 0
    for control, rules in (("slow_30pct", {"step_time_vs_reference", "rollout_throughput_vs_reference",
                                           "train_throughput_vs_reference"}),
                           ("router_scale_1", {"logprob_diff_below_0.02", "logprob_diff_band"})):
        r = recipe("check", str(EVENTS / control), "--recipe", "nemotron3_nano", "--json", env=env)
        assert r.returncode == EXIT_FAIL
        assert {row["rule"] for row in json.loads(r.stdout)["rows"] if row["verdict"] == "fail"} == rules
    out = tmp_path / "report"
    r = recipe("report", str(EVENTS / "slow_30pct"), "--recipe", "nemotron3_nano", "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "perf_step_time.png").stat().st_size > 10_000
    page = (out / "index.html").read_text()
    assert "step_time_vs_reference" in page and "1.300x ref" in page


# -- a command without its optional part says so ------------------------------------------------------

def test_report_without_matplotlib_names_the_extra_before_any_work(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "matplotlib").mkdir(parents=True)
    # an installation without matplotlib, as the import system reports it
    (shadow / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n")
    env = clean_env(PYTHONPATH=f"{shadow}:{ROOT}")
    out = tmp_path / "report"
    # PATH need not exist as a run for the check to come first: it is a real events dir here
    r = recipe("report", str(EVENTS / "healthy"), "--recipe", "nemotron3_nano", "--out", str(out), env=env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'recipe-bundle[report]'" in r.stderr
    assert "internal error" not in r.stderr and not out.exists()
    # the same command with matplotlib importable works
    assert recipe("report", str(EVENTS / "healthy"), "--recipe", "nemotron3_nano", "--out", str(out)).returncode == 0


def shortened(tmp_path: Path, steps: int, name: str = "short", **fields) -> Path:
    """The healthy control cut to its first `steps` steps, as a run that stopped (or was launched) there."""
    d = run_dir(tmp_path, "healthy", name=name, **fields)
    for f in (d / "events").glob("*.jsonl"):
        kept = []
        for line in f.read_text().splitlines():
            ev = json.loads(line)
            m = ev.get("metrics") or {}
            step = m.get("rollout/step", m.get("train/step", ev.get("rollout_id")))
            if step is None or step < steps:
                kept.append(line)
        f.write_text("".join(k + "\n" for k in kept))
    return d


def test_a_healthy_shortened_run_passes_what_it_can_be_judged_on_and_says_what_could_not_apply(tmp_path):
    d = shortened(tmp_path, 3, script_env={"RECIPE_NUM_ROLLOUT": "3"})
    p = recipe("check", str(d), "--json")
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["passed"], p.stdout + p.stderr
    verdicts = {r["rule"]: r["verdict"] for r in doc["rows"]}
    # rules about steps the run was never launched for are n/a, naming the run's length; never pass
    assert verdicts["all_train_steps"] == verdicts["all_rollouts"] == "n/a"
    row = next(r for r in doc["rows"] if r["rule"] == "all_train_steps")
    assert "run has 3 of 10 steps" in row["observed"]
    # what the three steps can show is judged, and passes
    assert verdicts["loss_finite"] == verdicts["grad_norm_not_absurd"] == verdicts["ppo_kl_zero_at_step0"] == "pass"
    assert not any(v in ("fail", "blocked") for v in verdicts.values()), verdicts
    table = recipe("check", str(d), env=clean_env(COLUMNS="300"))
    assert table.returncode == 0 and "gate PASSED" in table.stdout, table.stdout
    assert "N/A" in table.stdout and "could not apply, run has 3 of 10 steps" in table.stdout
    # plan.json alone says it too (a run whose run.json lacks the script environment)
    (d / "plan.json").write_text(json.dumps({"options": {"num_rollout": 3}}))
    doc = json.loads((d / "run.json").read_text())
    del doc["script_env"]
    (d / "run.json").write_text(json.dumps(doc))
    assert recipe("check", str(d)).returncode == 0


def test_a_shortened_run_is_never_blessed(tmp_path, bundle):
    root, env = bundle
    d = shortened(tmp_path, 3, script_env={"RECIPE_NUM_ROLLOUT": "3"})
    r = recipe("bless", str(d), env=env)
    assert r.returncode == EXIT_REFUSED and "run has 3 of 10 steps" in r.stderr, r.stderr
    assert not (root / "recipes" / "nemotron3_nano" / "reference_metrics.jsonl").exists()


def test_a_shortened_run_that_misses_its_own_steps_still_fails(tmp_path):
    # launched for 5, stopped after 3: the steps of its own length are missing
    d = shortened(tmp_path, 3, script_env={"RECIPE_NUM_ROLLOUT": "5"})
    doc = json.loads(recipe("check", str(d), "--json").stdout)
    assert not doc["passed"]
    assert {r["rule"]: r["verdict"] for r in doc["rows"]}["all_train_steps"] == "fail"
    # a run.json whose num_rollout is not a number is judged at the recipe's full length
    d = shortened(tmp_path, 3, name="odd", script_env={"RECIPE_NUM_ROLLOUT": "3; id"})
    assert recipe("check", str(d)).returncode == EXIT_FAIL


def test_check_of_an_interrupted_run_is_one_line_saying_where_it_stopped(tmp_path):
    d = shortened(tmp_path, 4, status="interrupted", script_env={"RECIPE_NUM_ROLLOUT": "10"})
    p = recipe("check", str(d))
    assert p.returncode == EXIT_FAIL, p.stdout + p.stderr
    assert p.stdout.startswith("interrupted at step 4/10"), p.stdout
    assert "FAIL" not in p.stdout and len(p.stdout.splitlines()) == 1, p.stdout
    doc = json.loads(recipe("check", str(d), "--json").stdout)
    assert doc["stopped"] == {"steps_done": 4, "steps_planned": 10} and not doc["passed"]
    # events that stop early, with no run.json at all, say the same
    p = recipe("check", str(EVENTS / "stopped_after_6"), "--recipe", "nemotron3_nano")
    assert p.returncode == EXIT_FAIL and p.stdout.startswith("interrupted at step 6/10"), p.stdout


def test_a_shortened_run_is_held_to_the_reference_on_its_own_steps_only(tmp_path, bundle):
    _, env = bundle
    assert recipe("bless", str(run_dir(tmp_path, "healthy", name="good")), env=env).returncode == 0
    d = shortened(tmp_path, 3, script_env={"RECIPE_NUM_ROLLOUT": "3"})
    p = recipe("check", str(d), "--json", env=env)
    doc = json.loads(p.stdout)
    rows = {r["rule"]: r for r in doc["rows"]}
    assert p.returncode == 0 and doc["passed"], p.stdout
    # bands compare steps 0..2 only; the relative rules their steps 1..2 (from_step = 1)
    assert rows["logprob_diff_band"]["verdict"] == rows["response_len_band"]["verdict"] == "pass"
    assert rows["step_time_vs_reference"]["verdict"] == "pass"
    assert "steps 1..2" in rows["step_time_vs_reference"]["observed"]
    # one step: the relative rules start at step 1, which the run was never launched for
    d = shortened(tmp_path, 1, name="one", script_env={"RECIPE_NUM_ROLLOUT": "1"})
    doc = json.loads(recipe("check", str(d), "--json", env=env).stdout)
    rows = {r["rule"]: r["verdict"] for r in doc["rows"]}
    assert rows["step_time_vs_reference"] == "n/a" and rows["logprob_diff_band"] == "pass", rows
