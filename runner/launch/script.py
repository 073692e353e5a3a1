"""Run a recipe's run script as a child process: log to the run directory, forward signals.

The script runs in its own process group; on SIGINT/SIGTERM we signal that group (the script's
trap then stops its Ray job and the Ray it started) and wait, escalating to SIGKILL of the same
group only after a grace period. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from runner.secrets import secret_values

GRACE_S = 60


def scrub(line: str, secrets: list[str]) -> str:
    for s in secrets:
        line = line.replace(s, "<redacted>")
    return line


def run_script(script: Path, env: dict[str, str], log_path: Path, echo: bool = True,
               on_start=None) -> tuple[int, bool]:
    """Run `bash script` with env; return (exit code, interrupted). on_start(pid) once it runs."""
    full_env = dict(os.environ)
    full_env.update(env)
    # `python3` and `ray` in the script resolve to this interpreter's environment first.
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    secrets = secret_values()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    interrupted = threading.Event()

    procs: list[subprocess.Popen] = []

    def forward(signum, _frame):
        # Handlers are in place before the child starts, so a signal can never be lost in between.
        interrupted.set()
        if not procs:
            return
        proc = procs[0]
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

        def escalate():
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threading.Thread(target=escalate, daemon=True).start()

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(log_path, "a", buffering=1) as log:
            if interrupted.is_set():
                return 130, True
            proc = subprocess.Popen(["bash", str(script)], env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            procs.append(proc)
            if interrupted.is_set():  # a signal that arrived while starting
                forward(signal.SIGTERM, None)
            if on_start:
                on_start(proc.pid)
            assert proc.stdout is not None
            for line in proc.stdout:
                line = scrub(line, secrets)
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rc, interrupted.is_set()
