"""What the two Slurm benchmarks (bench_slurm.py, bench_pyxis.py) share: running a command, waiting
for a job on the test cluster, reading the job's `[recipe HH:MM:SS]` milestones, printing the table."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time

STAMP = re.compile(r"^\[recipe (\d\d:\d\d:\d\d)\] (.*)$")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


def sh(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, check=False)


def job_state(env: dict[str, str], job: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S*)", sh("scontrol", "show", "job", "-o", job, env=env).stdout))


def wait_done(env: dict[str, str], job: str, timeout: float) -> tuple[dict[str, str], float]:
    """The job's final scontrol fields and the monotonic time it was first seen ended."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        info = job_state(env, job)
        if info.get("JobState") in ENDED:
            return info, time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"job {job} did not finish in {timeout} s")


def seconds_of_day(t: dt.datetime) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def stamps(out: str) -> list[tuple[float, str]]:
    """The job output's [recipe HH:MM:SS] lines as (seconds of day, message)."""
    rows = []
    for line in out.splitlines():
        m = STAMP.match(line)
        if m:
            h, mi, s = map(int, m.group(1).split(":"))
            rows.append((h * 3600 + mi * 60 + s, m.group(2)))
    return rows


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>7}  note")
    for what, secs, note in rows:
        print(f"{what:<{width}}  {secs:>7}  {note}")
