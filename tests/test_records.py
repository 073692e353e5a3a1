"""Run records and replay, through the real CLI, on a recipe that runs in a second.

The test recipe (tests/data/echo_recipe) writes miles-format metric events derived from its
seed, so every stage is real: preflight, run directory, run.json, logs, metrics.jsonl, gate,
replay and its comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RECIPE_BIN, ROOT, clean_env, make_bundle, recipe

from runner.records.record import load_record, write_json_atomic

PLANTED = "sk-test-PLANTED-secret-4242"


@pytest.fixture
def bundle(tmp_path):
    """A bundle root holding the shared launch lib and the echo test recipe."""
    return make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")


def env_for(bundle: Path, **extra: str) -> dict[str, str]:
    return clean_env(RECIPE_BUNDLE_ROOT=str(bundle), **extra)


def run_echo(bundle: Path, runs: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe("run", "echo", "--runs-dir", str(runs), *args, env=env_for(bundle, **env), cwd=bundle)


def only_run(runs: Path) -> Path:
    dirs = [d for d in runs.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_writes_a_complete_record(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = run_echo(bundle, runs)
    assert p.returncode == 0, p.stderr
    d = only_run(runs)
    assert d.name.endswith("-echo-cpu-" + d.name.rsplit("-", 1)[1]) and d.name[:8].isdigit()
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "succeeded" and rec["exit_code"] == 0
    assert rec["recipe"] == "echo" and rec["recipe_digest"].startswith("sha256:")
    assert "echo/run.sh" in rec["recipe_files"] and "lib/launch.sh" in rec["recipe_files"]
    assert rec["image"] == "none" and rec["cell"] == "cpu"
    assert rec["argv"] == [] and rec["entrypoint"] == ["bash", str(bundle / "recipes" / "echo" / "run.sh")]
    assert rec["script_env"]["RECIPE_SEED"] == "7" and (d / "plan.json").is_file() and (d / "run.sh").is_file()
    assert rec["seeds"] == {"seed": "7", "rollout_seed": "11"}
    assert rec["inputs_verification"]["status"] == "ok"
    assert rec["inputs_verification"]["data"]["counts"]["ok"] == 1
    assert rec["started_at"] <= rec["ended_at"]
    assert rec["host"]["hostname"] and rec["host"]["cpu"] and rec["host"]["runner_version"]
    assert rec["bundle"]["commit"]
    assert rec["gate"]["passed"] is True
    assert (d / "metrics.jsonl").is_file() and (d / "gate.json").is_file()
    assert (d / "logs" / "run.log").read_text().startswith("echo recipe: seed 7")
    # never reused: a second run gets its own directory
    assert run_echo(bundle, runs).returncode == 0
    assert len(list(runs.iterdir())) == 2


def test_secrets_are_passed_by_name_and_never_written(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = run_echo(bundle, runs, WANDB_API_KEY=PLANTED, HF_TOKEN=PLANTED)
    assert p.returncode == 0, p.stderr
    d = only_run(runs)
    rec = json.loads((d / "run.json").read_text())
    assert rec["environment"]["WANDB_API_KEY"] == "$WANDB_API_KEY"
    assert set(rec["secrets_passed"]) == {"WANDB_API_KEY", "HF_TOKEN"}
    # the script did see the value (it echoes it), yet no file of the run holds it
    assert "<redacted>" in (d / "logs" / "run.log").read_text()
    for f in d.rglob("*"):
        if f.is_file():
            assert PLANTED not in f.read_text(errors="replace"), f
    assert PLANTED not in p.stdout + p.stderr


def test_gate_failure_marks_the_run(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = run_echo(bundle, runs, TEST_BAD="1")
    assert p.returncode == 1
    rec = json.loads((only_run(runs) / "run.json").read_text())
    assert rec["status"] == "gate-failed" and rec["gate"]["passed"] is False
    assert "finite_loss" in p.stderr


def wait_script_started(runs: Path, timeout: float = 60) -> tuple[Path, int]:
    """The run directory and script process group, once the script runs and run.json names its group.

    The script may write its `started` marker before the runner has recorded the group id: wait for both.
    """
    def ready() -> bool:
        dirs = [d for d in runs.glob("*") if d.is_dir()] if runs.is_dir() else []
        return bool(dirs) and (dirs[0] / "started").exists() and "script_pgid" in json.loads(
            (dirs[0] / "run.json").read_text())

    wait_for(ready, timeout)
    d = only_run(runs)
    return d, json.loads((d / "run.json").read_text())["script_pgid"]


def test_interrupted_run_is_marked_and_its_processes_end(bundle, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*RECIPE_BIN, "run", "echo", "--runs-dir", str(runs)], cwd=bundle,
                            env=env_for(bundle, TEST_SLEEP="60"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    d, pgid = wait_script_started(runs)
    assert load_record(d)["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "interrupted" and rec["ended_at"]
    assert group_ends(pgid)  # the script and its sleep are gone


def test_an_interrupted_run_ends_on_the_step_where_it_stopped(bundle, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*RECIPE_BIN, "run", "echo", "--runs-dir", str(runs)], cwd=bundle,
                            env=env_for(bundle, TEST_STEP_SLEEP="1.5"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def one_step() -> bool:   # the first step's events are whole, the second's not yet written
        found = list(runs.glob("*/events/main.jsonl")) if runs.is_dir() else []
        return bool(found) and '"rollout/step": 0' in found[0].read_text()

    wait_for(one_step)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert "interrupted at step 1/3; record:" in last, err


def group_ends(pgid: int, timeout: float = 5) -> bool:
    """The process group is gone (allowing init a moment to reap a killed child's orphaned zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_killed_runner_leaves_a_record_that_reads_interrupted(bundle, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*RECIPE_BIN, "run", "echo", "--runs-dir", str(runs)], cwd=bundle,
                            env=env_for(bundle, TEST_SLEEP="60"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    d, pgid = wait_script_started(runs)
    proc.kill()  # SIGKILL: the runner cannot write anything
    proc.wait(10)
    try:
        assert json.loads((d / "run.json").read_text())["status"] == "running"
        assert load_record(d)["status"] == "interrupted (stale)"
        r = recipe("replay", str(d), env=env_for(bundle), cwd=bundle)
        assert r.returncode == 6 and "only finished runs can be replayed" in r.stderr
    finally:
        os.killpg(pgid, signal.SIGKILL)  # end the orphaned script: exactly its own process group


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    f = tmp_path / "run.json"
    write_json_atomic(f, {"status": "running"})
    with pytest.raises(TypeError):  # a value JSON cannot hold, after the ones it can
        write_json_atomic(f, {"status": "succeeded", "bad": object()})
    assert json.loads(f.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file either


def test_replay_reproduces_bit_for_bit(bundle, tmp_path):
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs).returncode == 0
    orig = only_run(runs)
    p = recipe("replay", str(orig), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 0, p.stderr
    assert "IDENTICAL bit for bit" in p.stderr and "excluded perf/step_time" in p.stderr
    new = next(d for d in runs.iterdir() if d != orig)
    rep = json.loads((new / "replay.json").read_text())
    assert rep["identical"] and rep["compared_values"] == 9  # 3 steps x loss, grad_norm, response_len
    assert json.loads((new / "run.json").read_text())["replay_of"]["run_id"] == orig.name


def test_replay_detects_a_planted_difference(bundle, tmp_path):
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs).returncode == 0
    orig = only_run(runs)
    ev = orig / "events" / "main.jsonl"
    lines = [json.loads(x) for x in ev.read_text().splitlines()]
    lines[2]["metrics"]["train/grad_norm"] += 1e-12  # one value, one ulp-scale nudge
    ev.write_text("".join(json.dumps(x) + "\n" for x in lines))
    p = recipe("replay", str(orig), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 1, p.stderr
    assert "DIFFERENT" in p.stderr and "train/grad_norm step 1" in p.stderr


def test_replay_refuses_a_changed_recipe(bundle, tmp_path):
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs).returncode == 0
    orig = only_run(runs)
    script = bundle / "recipes" / "echo" / "run.sh"
    script.write_text(script.read_text() + "# an edit\n")
    p = recipe("replay", str(orig), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 6
    assert "recipe echo changed since the run" in p.stderr and "echo/run.sh" in p.stderr
    assert len(list(runs.iterdir())) == 1, "a refused replay starts nothing"


def test_replay_refuses_a_changed_image(bundle, tmp_path):
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs).returncode == 0
    orig = only_run(runs)
    toml = bundle / "recipes" / "echo" / "recipe.toml"
    toml.write_text(toml.read_text().replace('reference = "none"', 'reference = "img@sha256:' + "0" * 64 + '"'))
    p = recipe("replay", str(orig), "--allow-changed-recipe", env=env_for(bundle), cwd=bundle)
    assert p.returncode == 6
    assert "image changed since the run" in p.stderr


def test_replay_of_a_run_blessed_afterwards_is_allowed(bundle, tmp_path):
    """Blessing writes reference_metrics.jsonl into the recipe; that is not a change of the launch."""
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs).returncode == 0
    orig = only_run(runs)
    b = recipe("bless", str(orig), env=env_for(bundle), cwd=bundle)
    assert b.returncode == 0, b.stderr
    assert (bundle / "recipes" / "echo" / "reference_metrics.jsonl").is_file()
    p = recipe("replay", str(orig), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 0, p.stderr


def test_replay_restores_only_the_allowlisted_settings_of_the_environment(bundle, tmp_path):
    """A numeric setting the run took from the environment (REPLAYED_ENV) is recorded and re-applied by
    replay; any other recorded variable is not."""
    runs = tmp_path / "runs"
    assert run_echo(bundle, runs, RECIPE_SEED_NOTE="from-env", PYTHONHASHSEED="3").returncode == 0
    orig = only_run(runs)
    rec = json.loads((orig / "run.json").read_text())
    assert rec["environment"]["PYTHONHASHSEED"] == "3" and rec["environment"]["RECIPE_SEED_NOTE"] == "from-env"
    p = recipe("replay", str(orig), env=env_for(bundle), cwd=bundle)
    assert p.returncode == 0, p.stderr
    new = next(d for d in runs.iterdir() if d != orig)
    env = json.loads((new / "run.json").read_text())["environment"]
    assert env["PYTHONHASHSEED"] == "3" and "RECIPE_SEED_NOTE" not in env
    assert env["RECIPE_BUNDLE_ROOT"] == str(bundle)


# -- every way out of a run leaves a final status (issue 14, "Run directories and records") ----------

def start_echo(bundle: Path, args: list[str], stdout=subprocess.DEVNULL, **env: str) -> subprocess.Popen:
    return subprocess.Popen([*RECIPE_BIN, "run", "echo", *args], cwd=bundle, env=env_for(bundle, **env),
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def wait_for(pred, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_runs_into_one_run_dir_the_second_is_refused(bundle, tmp_path):
    d = tmp_path / "same"
    first = start_echo(bundle, ["--run-dir", str(d)], TEST_SLEEP="8")
    second = start_echo(bundle, ["--run-dir", str(d)], TEST_SLEEP="8")
    (_, err1), (_, err2) = first.communicate(timeout=60), second.communicate(timeout=60)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (err1, err2)
    refused = err1 if first.returncode == 2 else err2
    # (on a loaded machine the second may only start once the first wrote run.json: refused all the same)
    assert refused.count("\n") == 1 and str(d) in refused
    assert "already claimed by pid" in refused or "already holds a run" in refused
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "succeeded"
    # events/ holds one run's lines only: 3 steps x 2 events
    assert len((d / "events" / "main.jsonl").read_text().splitlines()) == 6
    # and it is never reused afterwards either
    p = run_echo(bundle, tmp_path / "runs", "--run-dir", str(d))
    assert p.returncode == 2 and "never reused" in p.stderr


def test_a_gate_that_cannot_read_the_events_finalizes_the_record(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = run_echo(bundle, runs, TEST_CORRUPT="1")
    assert p.returncode == 5, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("recipe: error: ") and "not a JSON event line" in p.stderr
    rec = json.loads((only_run(runs) / "run.json").read_text())
    assert rec["status"] == "gate-failed" and rec["exit_code"] == 5 and rec["ended_at"]
    assert rec["gate"]["status"] == "error" and "main.jsonl:1" in rec["error"]


def test_a_closed_stdout_ends_the_script_and_finalizes_the_record(bundle, tmp_path):
    """`recipe run ... | head -1`: the run notices at once, ends its script and says so."""
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    proc = start_echo(bundle, ["--runs-dir", str(runs), "--verbose"], stdout=subprocess.PIPE, TEST_SLEEP="60")
    assert proc.stdout.readline().startswith("echo recipe: seed 7")   # head -1 ...
    proc.stdout.close()                                               # ... and exits
    err = proc.stderr.read()
    proc.wait(timeout=30)
    assert time.monotonic() - t0 < 30, "the script ran on for its whole sleep"
    assert proc.returncode == 130, err
    assert "stdout was closed; ending the run script" in err and "Traceback" not in err
    d = only_run(runs)
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "interrupted" and rec["exit_code"] == 130 and rec["interrupted_by"] == "stdout closed"
    assert group_ends(rec["script_pgid"])


def test_sigterm_during_the_gate_finalizes_the_record_and_exits_130(bundle, tmp_path):
    runs = tmp_path / "runs"
    proc = start_echo(bundle, ["--runs-dir", str(runs)], TEST_EXTRA_EVENTS="400000")
    wait_for(lambda: any(runs.glob("*/run.json")), 60)
    d = only_run(runs)
    wait_for(lambda: "gate_started_at" in json.loads((d / "run.json").read_text()), 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "recipe: interrupted" and "Traceback" not in err
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "interrupted" and rec["exit_code"] == 130
    assert rec["interrupted_by"] == "signal during the gate"


def test_sigterm_maps_to_130_for_any_verb(tmp_path):
    """Set centrally in runner/cli.py: here `recipe check` while it reads a large events file."""
    ev = tmp_path / "events"
    ev.mkdir()
    line = json.dumps({"type": "metric", "metrics": {"rollout/step": 1, "rollout/x": 0.5}}) + "\n"
    (ev / "main.jsonl").write_text(line * 1_500_000)
    proc = subprocess.Popen([*RECIPE_BIN, "check", str(ev), "--expected",
                             str(ROOT / "tests" / "data" / "echo_recipe" / "expected_metrics.toml")],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert proc.poll() is None, "finished before the signal; make the file larger"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "recipe: interrupted", err


def _claim_in_child(path: str, go, out) -> None:
    from runner.records.record import claim

    go.wait()
    try:
        claim(Path(path), "--run-dir")
        out.put(("won", os.getpid()))
    except Exception as e:  # noqa: BLE001 - the message is what is checked
        out.put(("lost", str(e)))


def test_racing_claims_one_wins_and_every_loser_names_it(tmp_path):
    # Processes released at once: exactly one holds the directory, and no loser ever reads a claim
    # whose content is not there yet (it names the winner's pid, not "another run").
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(str(tmp_path), go, out)) for _ in range(8)]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    winners = [v for k, v in results if k == "won"]
    assert len(winners) == 1, results
    losers = [v for k, v in results if k == "lost"]
    assert len(losers) == 7 and all(f"already claimed by pid {winners[0]} " in m for m in losers), losers
    assert sorted(p.name for p in tmp_path.iterdir()) == [".claim-run"]


def _claim_slowly(path: str) -> None:
    # Every line of claim() and its helpers runs 0.2 s late, so the moments between "the claim file
    # exists" and "it says who holds it" (if there are any) are wide enough to be seen.
    import sys

    from runner.records import record

    def tracer(frame, event, arg):
        if frame.f_code.co_filename == record.__file__:
            if event == "line":
                time.sleep(0.2)
            return tracer
        return None

    sys.settrace(tracer)
    record.claim(Path(path), "--run-dir")
    sys.settrace(None)


def test_a_claim_is_never_seen_before_it_names_its_holder(tmp_path):
    import multiprocessing as mp

    from runner.errors import UsageError
    from runner.records.record import claim

    winner = mp.get_context("fork").Process(target=_claim_slowly, args=(str(tmp_path),))
    winner.start()
    wait_for(lambda: (tmp_path / ".claim-run").exists(), timeout=60)
    with pytest.raises(UsageError) as refused:
        claim(tmp_path, "--run-dir")
    winner.join(timeout=60)
    assert winner.exitcode == 0
    assert f"already claimed by pid {winner.pid} " in str(refused.value)


SIGTERM_AT_FIRST_RECORD = """
import os, signal, sys
from runner.records import record
fired = []
def tracer(frame, event, arg):
    if frame.f_code is record.write_json_atomic.__code__:
        if event == "return" and not fired and frame.f_locals["path"].name == "run.json":
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # run.json says "running" from this instant
        return tracer
    return None
sys.settrace(tracer)
from runner.cli import main
main(sys.argv[1:])
"""


def test_sigterm_the_instant_run_json_first_exists_still_finishes_it(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = subprocess.run([RECIPE_BIN[0], "-c", SIGTERM_AT_FIRST_RECORD, "run", "echo", "--runs-dir", str(runs)],
                       env=env_for(bundle), cwd=bundle, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 130, p.stderr
    rec = json.loads((only_run(runs) / "run.json").read_text())
    assert (rec["status"], rec["exit_code"]) == ("interrupted", 130), rec
    assert "signal" in rec["interrupted_by"]


def test_children_the_script_leaves_behind_are_ended_and_the_run_recorded(bundle, tmp_path):
    """A background child holding stdout open kept the run `running` for as long as it lived; one with
    its output redirected outlived the run. Both are ended when the script exits (TERM, then KILL)."""
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    p = run_echo(bundle, runs, TEST_LEFTOVER="300")
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 60
    d = only_run(runs)
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "succeeded"
    pgid = rec["script_pgid"]
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _pgid(pid) == pgid]
    assert left == [], f"processes of the script's group outlived the run: {left}"
    assert "sent SIGTERM to what was left of its process group" in (d / "logs" / "run.log").read_text()


def _pgid(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, _, pgid = stat.rsplit(")", 1)[1].split()[:3]
    return None if state in ("Z", "X") else int(pgid)  # a zombie has ended: only its parent's reaping is left


def test_a_recipe_not_in_the_commit_makes_the_record_dirty(bundle, tmp_path):
    """Issue 28 §7: the commit a record names must hold the recipe that ran, or the record says not."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(bundle), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "the bundle")
    shutil.copytree(bundle / "recipes" / "echo", bundle / "recipes" / "echo2")   # never added to git
    toml = bundle / "recipes" / "echo2" / "recipe.toml"
    toml.write_text(toml.read_text().replace('name = "echo"', 'name = "echo2"'))

    def bundle_of(name: str) -> dict:
        runs = tmp_path / f"runs-{name}-{len(list(tmp_path.iterdir()))}"
        p = recipe("run", name, "--runs-dir", str(runs), env=env_for(bundle), cwd=bundle)
        assert p.returncode == 0, p.stderr
        return json.loads((only_run(runs) / "run.json").read_text())["bundle"]

    clean = bundle_of("echo")
    assert clean["source"] == "git" and clean["dirty"] is False and clean["recipe_changes"] == []
    untracked = bundle_of("echo2")
    assert untracked["dirty"] is True and "?? recipes/echo2/recipe.toml" in untracked["recipe_changes"]
    assert untracked["recipe_changes_count"] == len(untracked["recipe_changes"]) > 1
    script = bundle / "recipes" / "echo" / "run.sh"
    script.write_text(script.read_text() + "\n# edited\n")   # a tracked file of the recipe, modified
    modified = bundle_of("echo")
    assert modified["dirty"] is True and modified["recipe_changes"] == [" M recipes/echo/run.sh"]
