"""Run a recipe's run script as a child process: log to the run directory, forward signals.

logs/run.log gets every line of the script and of the tools it runs, colour codes stripped. The
console gets only the runner's own lines of the script (RUNNER_LINE), unless `verbose`: then every
line, the trainer's chatter included, in colour only on a terminal without NO_COLOR; tools' banners
(Ray's) reach only run.log either way (see TOOL_FD_ENV). A watched line
(runner/launch/watch.py) ends the script's process group; progress (runner/launch/progress.py)
is a status line on a terminal and a line per step elsewhere.

The script runs in its own process group; on SIGINT/SIGTERM we signal that group (the script's
trap then stops its Ray job and the Ray it started) and wait, escalating to SIGKILL of the same
group only after a grace period. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import click

from runner.console import color_enabled, is_terminal, safe, strip_ansi
from runner.launch.progress import Progress, StatusLine, follow, plain_lines
from runner.launch.watch import Watcher
from runner.secrets import secret_values

GRACE_S = 60
LEFTOVER_GRACE_S = 10  # a leftover child of a finished script gets this long after TERM
TOOL_FD_ENV = "RECIPE_TOOL_LOG_FD"
TOOL_DRAIN_S = 5
# The lines of a run script that are the runner's, not the trainer's: launch.sh's recipe_log
# ("[recipe 12:00:00] ...") and recipe_die ("recipe: error: ..."), and the runner's helpers ("recipe: ...").
# An allowlist: the trainer's per-step dicts, progress bars and library warnings stay in run.log.
RUNNER_LINE = re.compile(r"(\[recipe \d\d:\d\d:\d\d\] |recipe: )")


def scrub(line: str, secrets: list[str]) -> str:
    for s in secrets:
        line = line.replace(s, "<redacted>")
    return line


def run_script(script: Path, env: dict[str, str], log_path: Path, echo: bool = True,
               on_start=None, on_interrupt=None, watcher: Watcher | None = None, on_failure=None,
               progress: Progress | None = None, tool_log: bool = False,
               verbose: bool = True) -> tuple[int, bool]:
    """Run `bash script` with env; return (exit code, interrupted). on_start(pid) once it runs;
    on_interrupt(reason) when it is being ended (a signal, or stdout closed under `| head`);
    on_failure(match) when a line of its log matched the watcher (the script is then ended, and
    that is not an interruption); progress: the run's steps, shown while it runs; tool_log: give
    the script a descriptor for its tools' chatter (TOOL_FD_ENV), logged but not echoed; verbose:
    echo every line of the script, not only the runner's (RUNNER_LINE)."""
    full_env = dict(os.environ)
    full_env.update(env)
    # `python3` and `ray` in the script resolve to this interpreter's environment first.
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    secrets = secret_values()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    interrupted = threading.Event()
    failed = threading.Event()
    plain = not color_enabled(sys.stdout)
    out = StatusLine(sys.stdout, enabled=is_terminal(sys.stdout) and progress is not None)

    procs: list[subprocess.Popen] = []

    def end_group() -> None:
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

    def stop(reason: str) -> None:
        first = not interrupted.is_set()
        interrupted.set()
        if first and on_interrupt:
            on_interrupt(reason)
        end_group()

    def forward(signum, _frame):
        # Handlers are in place before the child starts, so a signal can never be lost in between.
        stop(signal.Signals(signum).name)

    log_lock = threading.Lock()

    def log_line(log, line: str) -> None:
        """Every line of the script and of its tools goes to run.log, colour codes stripped; a
        watched line ends the run."""
        line = scrub(line, secrets)
        bare = strip_ansi(line)
        with log_lock:
            log.write(bare)
        match = watcher.feed(bare) if watcher else None
        if match and not failed.is_set() and not interrupted.is_set():
            failed.set()
            if on_failure:
                on_failure(match)
            end_group()
        return line

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_progress = threading.Event()
    try:
        with open(log_path, "a", buffering=1) as log:
            if interrupted.is_set():
                return 130, True
            # Tools' chatter (Ray's start-up banner, `ray job submit`'s) comes on a descriptor of its
            # own (recipes/lib/launch.sh recipe_tool_fd): into run.log, not onto the console.
            # A descriptor number inherited from further up means nothing here: never pass it on.
            full_env.pop(TOOL_FD_ENV, None)
            tool_r, tool_w = os.pipe() if tool_log else (None, None)
            if tool_w is not None:
                full_env[TOOL_FD_ENV] = str(tool_w)
            try:
                proc = subprocess.Popen(["bash", str(script)], env=full_env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                        pass_fds=() if tool_w is None else (tool_w,))
            finally:
                if tool_w is not None:
                    os.close(tool_w)
            procs.append(proc)
            if interrupted.is_set():  # a signal that arrived while starting
                stop("signal while starting")
            if on_start:
                on_start(proc.pid)
            tools = threading.Thread(target=_log_tool_lines, args=(tool_r, lambda ln: log_line(log, ln)),
                                     daemon=True, name="tool-log")
            if tool_r is not None:
                tools.start()
            assert proc.stdout is not None
            # When the script exits, what it left in its process group is ended, so that a child
            # holding stdout open cannot keep the run "running" and none outlives the run.
            threading.Thread(target=_end_leftovers, args=(proc, lambda ln: log_line(log, ln)), daemon=True,
                             name="leftovers").start()
            gone = threading.Event()
            follower = None

            def stdout_closed():
                # `recipe run ... | head -1`: nobody reads the run's output any more. End the script
                # as SIGPIPE would end a pipeline, and keep logging until it is gone.
                if not gone.is_set():
                    gone.set()
                    print("recipe: stdout was closed; ending the run script", file=sys.stderr, flush=True)
                    stop("stdout closed")

            if echo:
                watch_stdout(proc, stdout_closed)
                if progress is not None:
                    follower = follow(progress, out if out.enabled else None, stop_progress,
                                      plain=lambda text: click.echo(f"recipe: {text}", err=True))
            for line in proc.stdout:
                line = log_line(log, line)
                if echo and not gone.is_set() and (verbose or RUNNER_LINE.match(strip_ansi(line))):
                    try:
                        out.write(strip_ansi(line) if plain else line)
                    except BrokenPipeError:
                        stdout_closed()
            if gone.is_set():
                stdout_to_devnull()
            rc = proc.wait()
            stop_progress.set()
            if follower is not None:
                follower.join(5)   # its last lines first, then _final_progress's
            if tool_r is not None:
                tools.join(TOOL_DRAIN_S)  # Ray's group was stopped by the script's trap; a straggler is not waited on
            if echo and not gone.is_set():
                _final_progress(progress, out)
    finally:
        stop_progress.set()
        for s, h in old.items():
            signal.signal(s, h)
    if failed.is_set():
        return rc, False
    return rc, interrupted.is_set()


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a run's log, escaped for the console (the trainer wrote them)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [safe(line.rstrip("\n")) for line in deque(f, maxlen=lines)]
    except OSError:
        return []


def _end_leftovers(proc: subprocess.Popen, log_line) -> None:
    """After the script exits: TERM what is left of its process group, KILL it after LEFTOVER_GRACE_S."""
    proc.wait()
    pgid = proc.pid
    for sig, grace in ((signal.SIGTERM, LEFTOVER_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return  # nothing left
        log_line(f"recipe: the run script exited; sent {sig.name} to what was left of its process group {pgid}\n")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _final_progress(progress: Progress | None, out: StatusLine) -> None:
    """The last word on progress: the status line is replaced by a plain line that stays."""
    if progress is None:
        return
    progress.poll()
    out.clear()
    if out.enabled:
        click.echo(f"recipe: {progress.text()}", err=True)
    else:
        plain_lines(progress, lambda text: click.echo(f"recipe: {text}", err=True))


def _log_tool_lines(fd: int, log_line) -> None:
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        try:
            for line in f:
                log_line(line)
        except ValueError:   # a straggler's line after run.log was closed (TOOL_DRAIN_S): dropped
            return


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
