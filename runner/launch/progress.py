"""A running run's progress from its events: the step it is at out of how many, elapsed, an estimate.

The events are miles' (`--save-debug-event-data DIR`, one JSON object per line, one file per process;
runner/gate/metrics.py reads them whole at the end). Here they are tailed: each poll reads only what
was appended since the last one, and a line without its newline yet waits for the next poll. A step
counts as done when a metric event carries its `rollout/step` (or, in a run that logs no rollout
events, its `train/step`); steps are numbered from 0.

On a terminal the progress is one status line kept under the log lines (StatusLine); elsewhere
one plain line per step.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from runner.gate.metrics import NOT_EVENT_FILES


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Steps done so far in an events directory, and when each was first seen."""

    def __init__(self, events_dir: Path, total: int, now=time.monotonic) -> None:
        self.events_dir = Path(events_dir)
        self.total = total
        self.now = now
        self.started = now()
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}
        self.max_step = {"rollout/step": -1, "train/step": -1}
        self.seen: list[tuple[int, float]] = []   # (steps done, when first seen)
        self.shown = 0   # the last step given a plain line (off a terminal)

    @property
    def done(self) -> int:
        top = self.max_step["rollout/step"]
        if top < 0:
            top = self.max_step["train/step"]
        return min(self.total, top + 1)

    def poll(self) -> bool:
        """Read what the event files gained; True when the number of steps done grew."""
        before = self.done
        if self.events_dir.is_dir():
            for path in sorted(self.events_dir.glob("*.jsonl")):
                if path.name not in NOT_EVENT_FILES:
                    self._read_new(path)
        if self.done > before:
            self.seen.append((self.done, self.now()))
            return True
        return False

    def _read_new(self, path: Path) -> None:
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
        except OSError:
            return
        if not data:
            return
        self.offsets[path] = self.offsets.get(path, 0) + len(data)
        data = self.partial.pop(path, b"") + data
        lines = data.split(b"\n")
        if lines[-1]:
            self.partial[path] = lines[-1]   # not finished writing yet
        for raw in lines[:-1]:
            self._take(raw)

    def _take(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("type") != "metric" or not isinstance(event.get("metrics"), dict):
            return
        for key in self.max_step:
            step = event["metrics"].get(key)
            if isinstance(step, int) and not isinstance(step, bool) and step > self.max_step[key]:
                self.max_step[key] = step

    def remaining_s(self) -> float | None:
        """Seconds left at the pace of the steps between the first and the latest step seen; None
        until there are two: the time to the first step is mostly start-up (loading, compiling), and
        an estimate from it was minutes where the rest took seconds."""
        if len(self.seen) < 2:
            return None
        (n0, t0), (n1, t1) = self.seen[0], self.seen[-1]
        return (t1 - t0) / (n1 - n0) * (self.total - self.done)

    def text(self, step: int | None = None) -> str:
        """The progress line; `step` names an earlier step reached in the same poll (a line per
        step off a terminal), shown with the current time and estimate."""
        done = self.done if step is None else step
        elapsed = clock(self.now() - self.started)
        left = self.remaining_s()
        if done >= self.total:
            tail = "all steps done"
        elif left is None:
            tail = "estimate after the next step" if self.seen else "estimate after two steps"
        else:
            tail = f"about {clock(left)} left"
        return f"step {done}/{self.total}, elapsed {elapsed}, {tail}"


def steps_done(events_dir: Path, total: int) -> int:
    """How many steps a run's events show done, at most `total`: where an interrupted run stopped."""
    progress = Progress(events_dir, total)
    progress.poll()
    return progress.done


class StatusLine:
    """Log lines scroll above one status line at the bottom of a terminal. Every write goes through
    here, so the status line is erased before a log line is printed and drawn again after it."""

    ERASE = "\r\x1b[2K"

    def __init__(self, stream=None, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.status = ""
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            if self.enabled and self.status:
                self.stream.write(self.ERASE)
            self.stream.write(line)
            if self.enabled and self.status:
                self.stream.write(self.status)
            self.stream.flush()

    def set(self, status: str) -> None:
        from runner.console import elide, width

        with self.lock:
            # One screen line at most: a wrapped status line could not be erased by ERASE.
            self.status = elide(status, width(self.stream) - 1)
            if self.enabled:
                self.stream.write(self.ERASE + status)
                self.stream.flush()

    def clear(self) -> None:
        with self.lock:
            if self.enabled and self.status:
                self.stream.write(self.ERASE)
                self.stream.flush()
            self.status = ""


def follow(progress: Progress, status: StatusLine | None, stop: threading.Event, plain=None,
           every_s: float = 1.0) -> threading.Thread:
    """Poll in a thread until stop is set: redraw the status line each poll on a terminal, or call
    plain(text) once per new step elsewhere."""

    def loop() -> None:
        while not stop.wait(every_s):
            progress.poll()
            if status is not None:
                status.set(f"recipe: {progress.text()}")
            elif plain:
                plain_lines(progress, plain)

    t = threading.Thread(target=loop, daemon=True, name="progress")
    t.start()
    return t


def plain_lines(progress: Progress, plain) -> None:
    """One line for each step done since the last line: several steps may land within one poll."""
    for step in range(progress.shown + 1, progress.done + 1):
        plain(progress.text(step))
    progress.shown = max(progress.shown, progress.done)
