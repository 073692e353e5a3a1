"""Run a recipe's run script as a child process: log to the run directory, forward signals.

The script runs in its own process group; on SIGINT/SIGTERM we signal that group (the script's
trap then stops its Ray job and the Ray it started) and wait, escalating to SIGKILL of the same
group only after a grace period. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import select
import signal
import stat
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
               on_start=None, on_interrupt=None) -> tuple[int, bool]:
    """Run `bash script` with env; return (exit code, interrupted). on_start(pid) once it runs;
    on_interrupt(reason) when it is being ended (a signal, or stdout closed under `| head`)."""
    full_env = dict(os.environ)
    full_env.update(env)
    # `python3` and `ray` in the script resolve to this interpreter's environment first.
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    secrets = secret_values()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    interrupted = threading.Event()

    procs: list[subprocess.Popen] = []

    def stop(reason: str) -> None:
        first = not interrupted.is_set()
        interrupted.set()
        if first and on_interrupt:
            on_interrupt(reason)
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

    def forward(signum, _frame):
        # Handlers are in place before the child starts, so a signal can never be lost in between.
        stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(log_path, "a", buffering=1) as log:
            if interrupted.is_set():
                return 130, True
            proc = subprocess.Popen(["bash", str(script)], env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            procs.append(proc)
            if interrupted.is_set():  # a signal that arrived while starting
                stop("signal while starting")
            if on_start:
                on_start(proc.pid)
            assert proc.stdout is not None
            gone = threading.Event()

            def stdout_closed():
                # `recipe run ... | head -1`: nobody reads the run's output any more. End the script
                # as SIGPIPE would end a pipeline, and keep logging until it is gone.
                if not gone.is_set():
                    gone.set()
                    print("recipe: stdout was closed; ending the run script", file=sys.stderr, flush=True)
                    stop("stdout closed")

            if echo:
                watch_stdout(proc, stdout_closed)
            for line in proc.stdout:
                line = scrub(line, secrets)
                log.write(line)
                if echo and not gone.is_set():
                    try:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    except BrokenPipeError:
                        stdout_closed()
            if gone.is_set():
                stdout_to_devnull()
            rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rc, interrupted.is_set()


def stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null: later writes, and Python's flush at exit, must not fail again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def watch_stdout(proc: subprocess.Popen, on_closed) -> None:
    """When stdout is a pipe, notice its reader going away at once, not at the script's next line
    (which may be an hour later): the write end of a pipe without readers polls as POLLERR."""
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
    except (OSError, ValueError, AttributeError):
        return

    def watch():
        poller = select.poll()
        poller.register(fd, 0)  # no events asked for: only POLLERR / POLLHUP / POLLNVAL come back
        while proc.poll() is None:
            if poller.poll(500):
                on_closed()
                return

    threading.Thread(target=watch, daemon=True, name="watch-stdout").start()
