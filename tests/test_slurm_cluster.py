"""The generated sbatch script on a real two-node Slurm cluster (slurmctld + two slurmd + munged,
started by the tests), with `--container-runtime none` and a CPU workload through the same Ray
bring-up code as production: ray_node.sh -> recipe_ray_start/recipe_ray_wait/recipe_ray_stop.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_bundle
from fixtures_slurm import (  # noqa: F401
    ROOT,
    SlurmCluster,
    assert_job_gone,
    assert_not_in_any_argv,
    slurm_cluster_fixture,
)

pytestmark = pytest.mark.slow

PLANTED = {"WANDB_API_KEY": "sk-test-PLANTED-wandb-4242", "HF_TOKEN": "hf_test_PLANTED_hf_4242"}


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, ROOT / "tests" / "data" / "ray_probe_recipe", "ray_probe")


def submit(cluster: SlurmCluster, bundle: Path, tmp_path: Path, *extra: str, **env: str) -> tuple[str, Path]:
    runs = tmp_path / "runs"
    venv_bin = str(Path(sys.executable).parent)
    full_env = cluster.env(PATH=f"{venv_bin}:/usr/bin:/bin:/usr/sbin:/sbin", RECIPE_BUNDLE_ROOT=str(bundle),
                           **PLANTED, **env)
    p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", "ray_probe", "--nodes", "2",
                        "--gpus-per-node", "0", "--container-runtime", "none", "--runs-dir", str(runs),
                        "--output-dir", str(tmp_path / "out"), *extra, "--submit", "--", "--skip-preflight", "lint"],
                       env=full_env, cwd=bundle, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), runs


def frozen_run_dir(runs: Path) -> Path:
    """The one run directory `recipe sbatch --submit` froze the plan into."""
    [run_dir] = [d for d in runs.iterdir() if (d / "plan.json").is_file()]
    return run_dir


def assert_nothing_left(cluster: SlurmCluster, job: str) -> None:
    assert_job_gone(cluster, job, timeout=20)


def assert_no_secrets(*roots: Path) -> None:
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            for name, value in PLANTED.items():
                assert value.encode() not in data, f"{name}'s value found in {f}"


def test_two_node_job_runs_the_recipe_and_leaves_nothing(slurm_cluster, bundle, tmp_path):
    job, runs = submit(slurm_cluster, bundle, tmp_path)
    try:
        info = slurm_cluster.wait_job(job, timeout=240)
        out = (runs / f"recipe-ray_probe-{job}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-3000:]
        assert info["NodeList"] == "n[1-2]"
        print(f"\njob {job}: {info.get('RunTime')} from start to end")
        assert "ray ready: 2 node(s)" in out
        run_dir = frozen_run_dir(runs)
        log = (run_dir / "logs" / "run.log").read_text()   # the head node's `recipe exec` writes the run's log
        assert "probe: 2 node(s) alive (127.0.0.2, 127.0.0.3); tasks ran on 2" in log, out[-3000:]
        rec = json.loads((run_dir / "run.json").read_text())
        assert rec["status"] == "succeeded" and rec["slurm_job_id"] == job and isinstance(rec["pid"], int)
        assert json.loads((run_dir / "plan.json").read_text())["run"]["skip"] == ["lint"]  # `--` options, frozen
        assert '"passed": true' in (run_dir / "gate.json").read_text()
        assert_nothing_left(slurm_cluster, job)
        script = run_dir / "slurm-job.sh"
        assert "RUN_ARGS" not in script.read_text()
        assert_no_secrets(runs, tmp_path / "out", script, slurm_cluster.state / "log", Path(f"/tmp/recipe-ray-{job}"))
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def test_killed_node_step_fails_the_job_fast_naming_the_node(slurm_cluster, bundle, tmp_path):
    job, runs = submit(slurm_cluster, bundle, tmp_path, PROBE_HOLD_S="300")
    try:
        deadline = time.monotonic() + 180
        steps: dict[str, str] = {}
        while time.monotonic() < deadline and "recipe-run" not in steps:
            steps = slurm_cluster.steps(job)
            time.sleep(0.5)
        assert "recipe-run" in steps and "ray-worker-n2" in steps, steps
        # While it runs, no planted secret is on any process's command line.
        assert_not_in_any_argv(PLANTED.values())

        killed = time.monotonic()
        p = slurm_cluster.run("scancel", "--signal=KILL", steps["ray-worker-n2"])
        assert p.returncode == 0, p.stderr
        info = slurm_cluster.wait_job(job, timeout=60)
        took = time.monotonic() - killed
        out = (runs / f"recipe-ray_probe-{job}.out").read_text()
        assert info["JobState"] == "FAILED" and info["ExitCode"] == "1:0", out[-3000:]
        assert "recipe: error: node n2 (127.0.0.3): its Ray step ended" in out, out[-3000:]
        assert took < 45, f"job took {took:.0f} s to fail after the node's step was killed"
        print(f"\njob {job}: failed {took:.1f} s after its worker step was killed")
        assert_nothing_left(slurm_cluster, job)
        assert_no_secrets(runs, slurm_cluster.state / "log", Path(f"/tmp/recipe-ray-{job}"))
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def test_tiny_recipe_through_sbatch_passes_its_gate(slurm_cluster, tmp_path):
    """The real CPU recipe (GRPO of a tiny NemotronH with TRL, a Ray job) on the two-node allocation."""
    runs = tmp_path / "runs"
    env = slurm_cluster.env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin", **PLANTED)
    p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", "nemotron3_nano_tiny", "--nodes", "2",
                        "--gpus-per-node", "0", "--container-runtime", "none", "--runs-dir", str(runs),
                        "--output-dir", str(tmp_path / "out"), "--submit"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip()
    try:
        info = slurm_cluster.wait_job(job, timeout=400)
        out = (runs / f"recipe-nemotron3_nano_tiny-{job}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-4000:]
        print(f"\njob {job}: {info.get('RunTime')} from start to end")
        assert "ray ready: 2 node(s)" in out
        run_dir = frozen_run_dir(runs)
        gate = (run_dir / "gate.json").read_text()
        assert '"passed": true' in gate, gate[:2000]
        assert '"status": "succeeded"' in (run_dir / "run.json").read_text()
        assert "did not stop" not in out  # Ray stopped on TERM, without a KILL
        assert_nothing_left(slurm_cluster, job)
        assert_no_secrets(runs, tmp_path / "out", slurm_cluster.state / "log", Path(f"/tmp/recipe-ray-{job}"))
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def test_recipe_run_backend_slurm_inside_an_allocation(slurm_cluster, bundle, tmp_path):
    """`recipe run NAME --backend slurm` from a batch allocation renders the same script into the run
    directory and runs it there; the head node's `recipe exec RUN_DIR` carries out the plan.json that
    run froze, finishing its one run record."""
    runs = tmp_path / "runs"
    env = slurm_cluster.env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin",
                            RECIPE_BUNDLE_ROOT=str(bundle), RECIPE_CONTAINER_RUNTIME="none", **PLANTED)
    wrap = f"recipe run ray_probe --backend slurm --runs-dir {runs} --skip-preflight lint"
    p = subprocess.run(["sbatch", "--parsable", "--nodes=2", "--exclusive", f"--output={tmp_path}/alloc-%j.out",
                        "--wrap", wrap], env=env, cwd=bundle, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip()
    try:
        info = slurm_cluster.wait_job(job, timeout=240)
        out = (tmp_path / f"alloc-{job}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-3000:]
        [run_dir] = [d for d in runs.iterdir() if d.is_dir()]
        assert (run_dir / "slurm-job.sh").is_file() and '"status": "succeeded"' in (run_dir / "run.json").read_text()
        assert (run_dir / "plan.json").is_file() and not (run_dir / "launcher.json").exists()
        script = (run_dir / "slurm-job.sh").read_text()
        assert f"RUN_DIR={run_dir}" in script and "RUN_ARGS" not in script  # no option rebuilt into argv
        rec = json.loads((run_dir / "run.json").read_text())
        names = [c["name"] for c in rec["preflight"]]
        assert names[:3] == ["slurm", "pyxis", "enroot"] and "packages" in names  # host's, then the head node's
        assert "probe: 2 node(s) alive" in (run_dir / "logs" / "run.log").read_text(), out[-3000:]
        assert_nothing_left(slurm_cluster, job)
        assert_no_secrets(runs, tmp_path / f"alloc-{job}.out")
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def test_pyxis_check_uses_the_real_srun(slurm_cluster, monkeypatch, tmp_path):
    """The check asks the real srun: ok where the cluster loads pyxis; where a plugstack.conf does not
    (an empty one here, through a copy of slurm.conf), it says so and how to fix it."""
    from runner.launch.backends import slurm as backend

    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    assert backend.check_pyxis("pyxis").status == ("ok" if slurm_cluster.containers else "fail")
    (tmp_path / "plugstack.conf").write_text("")
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"^PlugStackConfig=.*$", f"PlugStackConfig={tmp_path}/plugstack.conf",
                           slurm_cluster.conf.read_text(), flags=re.M))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    c = backend.check_pyxis("pyxis")
    assert c.status == "fail" and "pyxis SPANK plugin is not loaded" in c.detail and "--container-runtime none" in c.fix
    assert backend.check_pyxis("none").status == "n/a"


def test_scancel_stops_every_step_and_leaves_nothing(slurm_cluster, bundle, tmp_path):
    """A user's scancel during the run: the job ends CANCELLED within KillWait and no process survives."""
    job, runs = submit(slurm_cluster, bundle, tmp_path, PROBE_HOLD_S="300")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "recipe-run" not in slurm_cluster.steps(job):
            time.sleep(0.5)
        assert "recipe-run" in slurm_cluster.steps(job)
        t0 = time.monotonic()
        assert slurm_cluster.run("scancel", job).returncode == 0
        info = slurm_cluster.wait_job(job, timeout=60)
        assert info["JobState"] == "CANCELLED"
        assert_nothing_left(slurm_cluster, job)
        print(f"\njob {job}: cancelled and cleaned up in {time.monotonic() - t0:.1f} s")
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def test_a_run_directory_the_nodes_do_not_share_is_caught_before_ray(slurm_cluster, bundle, tmp_path):
    """Ranks on other nodes write their events into the run directory and the gate reads them on the
    head: a --runs-dir that is node-local (the cluster's node-local path is a tmpfs of its own on n2)
    fails the job at once, naming the node, before any Ray node starts."""
    runs = slurm_cluster.state / "node-local" / f"runs-{tmp_path.name}"
    job, _ = submit(slurm_cluster, bundle, tmp_path, "--runs-dir", str(runs))
    try:
        info = slurm_cluster.wait_job(job, timeout=120)
        out = (runs / f"recipe-ray_probe-{job}.out").read_text()
        assert info["JobState"] == "FAILED" and info["ExitCode"] == "3:0", out[:3000]
        assert "recipe: error: node n2: wrote " in out and "is not shared by all nodes" in out, out[-3000:]
        assert "ray head started" not in out and "ray-head" not in slurm_cluster.steps(job)
        # frozen at submission, never begun: the record still says so, and nothing ran in it
        run_dir = frozen_run_dir(runs)
        assert json.loads((run_dir / "run.json").read_text())["status"] == "submitted"
        assert not (run_dir / "logs").exists()
        assert_nothing_left(slurm_cluster, job)
    finally:
        shutil.rmtree(runs, ignore_errors=True)


def test_a_job_near_its_time_limit_stops_the_run_and_records_it_interrupted(slurm_cluster, bundle, tmp_path):
    """--time with --stop-before: Slurm signals the batch script (USR1) before the wall, and the job
    stops the run as scancel would (TERM to its step: `recipe exec` stops the script, where the tiny
    trainer saves a checkpoint) well before Slurm would kill it: the record says interrupted, by a
    signal, ready for `recipe resume`. Slurm may signal up to 60 s early: the window allows for it."""
    # --no-resume-after: this test is about the stop (with a follow-up, --submit prints two job ids)
    job, runs = submit(slurm_cluster, bundle, tmp_path, "--time", "3", "--stop-before", "100", "--no-resume-after",
                       PROBE_HOLD_S="600")
    try:
        info = slurm_cluster.wait_job(job, timeout=240)
        out = (runs / f"recipe-ray_probe-{job}.out").read_text()
        assert info["JobState"] != "TIMEOUT" and "time limit is near" in out, out[-3000:]
        rec = json.loads((frozen_run_dir(runs) / "run.json").read_text())
        assert rec["status"] == "interrupted" and rec["slurm_job_id"] == job, out[-3000:]
        assert "did not stop" not in out
        assert_nothing_left(slurm_cluster, job)
    finally:
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)


def steps_trained(run_dir: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in run_dir.glob("events/**/actor_cell0_rank0.jsonl"))


def chain_metrics(run_dir: Path, upto: int | None = None) -> list[dict]:
    """Every non-wall-clock metric of the tiny trainer's train and rollout streams, by stream then step
    (as tests/test_tiny_resume.py compares them), in the order logged."""
    out = []
    for name in ("actor_cell0_rank0.jsonl", "rollout_manager.jsonl"):
        for line in (run_dir / "events" / name).read_text().splitlines():
            m = json.loads(line)["metrics"]
            if upto is None or m.get("train/step", m.get("rollout/step")) < upto:
                out.append({k: v for k, v in m.items() if not k.startswith("perf/")})
    return out


def by_step(metrics: list[dict]) -> list[dict]:
    return sorted(metrics, key=lambda m: ("train/step" not in m, m.get("train/step", m.get("rollout/step"))))


def test_a_run_stopped_before_its_wall_is_resumed_by_the_follow_up_job(slurm_cluster, tmp_path):
    """`recipe sbatch --time T --submit` submits the run and a job that resumes it if it stops before
    its wall (afternotok). The batch script gets the USR1 Slurm's --signal=B:USR1 would send (here
    once the trainer is past its first checkpoint, instead of at a wall a test cannot place
    mid-run): the run stops, saving a checkpoint, and is recorded interrupted; the follow-up
    job's `recipe resume` continues it as a new run linked by resume_of, whose gate passes."""
    runs = tmp_path / "runs"
    env = slurm_cluster.env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin", **PLANTED)
    p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", "nemotron3_nano_tiny", "--nodes", "2",
                        "--gpus-per-node", "0", "--container-runtime", "none", "--runs-dir", str(runs),
                        "--time", "30", "--submit"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    job, follow = p.stdout.split()
    try:
        first = frozen_run_dir(runs)
        deadline = time.monotonic() + 300
        # once it trains (the trainer saves where it is on the signal); early, because the signal takes a
        # few steps to land on a loaded machine (in CI it once landed after the last step)
        while time.monotonic() < deadline and steps_trained(first) < 1:
            assert slurm_cluster.job(job).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), p.stderr
            time.sleep(0.5)
        assert slurm_cluster.run("scancel", "--signal=USR1", "--batch", job).returncode == 0
        info = slurm_cluster.wait_job(job, timeout=120)
        out = (runs / f"recipe-nemotron3_nano_tiny-{job}.out").read_text()
        assert "time limit is near" in out and info["JobState"] != "COMPLETED", out[-3000:]
        assert json.loads((first / "run.json").read_text())["status"] == "interrupted"
        info = slurm_cluster.wait_job(follow, timeout=400)
        out = (runs / f"recipe-nemotron3_nano_tiny-resume-{follow}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-4000:]
        [second] = [d for d in runs.iterdir() if (d / "plan.json").is_file() and d != first]
        rec = json.loads((second / "run.json").read_text())
        assert rec["status"] == "succeeded" and rec["resume_of"]["run_id"] == first.name, rec
        assert '"passed": true' in (second / "gate.json").read_text()
        assert_nothing_left(slurm_cluster, follow)
        # the chain's metrics are the uninterrupted run's, bit for bit (the same plan, one job, no --time)
        k = int(rec["resume_of"]["checkpoint"].rsplit("-", 1)[1])
        p = subprocess.run([sys.executable, "-m", "runner.cli", "sbatch", "nemotron3_nano_tiny", "--nodes", "2",
                            "--gpus-per-node", "0", "--container-runtime", "none", "--runs-dir", str(tmp_path / "base"),
                            "--submit"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        base_job = p.stdout.strip()
        assert slurm_cluster.wait_job(base_job, timeout=400)["JobState"] == "COMPLETED"
        want = chain_metrics(frozen_run_dir(tmp_path / "base"))
        assert 1 <= k < 10 and len(want) == 20, k   # cut mid-run: a chain of two parts
        assert by_step(chain_metrics(first, upto=k) + chain_metrics(second)) == by_step(want)
    finally:
        slurm_cluster.run("scancel", job, follow)
        shutil.rmtree(f"/tmp/recipe-ray-{job}", ignore_errors=True)
