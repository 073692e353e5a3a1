"""launch.sh's recipe_ray_submit: Ray's "No available agent to submit job" (the head's job agent not
registered yet, seen on a loaded 2-node cluster right after every node joined) is retried, bounded;
any other failure is not."""

from __future__ import annotations

import subprocess

from conftest import ROOT

LIB = ROOT / "recipes" / "lib" / "launch.sh"
# A stand-in for `ray job submit` that answers as Ray's dashboard did for its first FAILS calls.
FAKE = r"""
fake_submit() {
  local n; n=$(cat "$COUNT"); echo $((n + 1)) > "$COUNT"
  if (( n < FAILS )); then
    echo "RuntimeError: Request failed with status code 500: $ANSWER" >&2; return 1
  fi
  echo "Job 'j' submitted successfully"
}
"""


def submit(tmp_path, fails: int, answer: str, timeout: int = 30) -> tuple[subprocess.CompletedProcess, int]:
    count = tmp_path / "count"
    count.write_text("0")
    script = f"source {LIB}\n{FAKE}\nrecipe_ray_submit fake_submit\n"
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                       env={"PATH": "/usr/bin:/bin", "COUNT": str(count), "FAILS": str(fails), "ANSWER": answer,
                            "RECIPE_RAY_READY_TIMEOUT": str(timeout), "RECIPE_RUN_ID": "t"})
    return p, int(count.read_text())


def test_no_agent_yet_is_retried_until_the_submit_goes_through(tmp_path):
    p, calls = submit(tmp_path, 2, "No available agent to submit job, please try again later..")
    assert p.returncode == 0 and calls == 3, p.stderr
    assert "submitted successfully" in p.stdout and p.stderr.count("no job agent yet") == 2


def test_any_other_failure_ends_at_once(tmp_path):
    p, calls = submit(tmp_path, 5, "Job with submission_id j already exists.")
    assert p.returncode == 1 and calls == 1 and "already exists" in p.stdout, p.stderr


def test_the_retries_are_bounded(tmp_path):
    p, calls = submit(tmp_path, 100, "No available agent to submit job", timeout=2)
    assert p.returncode == 1 and calls == 3 and "No available agent" in p.stdout, p.stderr
