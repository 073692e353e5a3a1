"""A running run's progress: the step it has trained out of how many, elapsed, an estimate, and the
final checkpoint being written.

Two sources, tailed (each poll reads only what was appended since the last one; a line without its
newline yet waits for the next poll):
- metric events (`events/*.jsonl`, the tiny recipe's miles-format lines): `train/step` and
  `rollout/step` of `"type": "metric"` events;
- the job's log (`logs/run.log`, a miles run, whose metrics are captured from it: docs/records.md):
  ` - step K: {` ends train step K (radixark/miles miles/backends/training_utils/log_utils.py:542),
  ` - perf K: {` or ` - rollout K: {` means rollout K was generated (miles/ray/rollout/metrics.py:89,
  log_utils.py:123), all @78527b91; Megatron's `saving checkpoint at iteration N` and `successfully
  saved checkpoint from iteration N` bracket a save (radixark/Megatron-LM
  megatron/training/checkpointing.py:540 and :742 @37f91617; miles passes the rollout id as N).

A step is done when its training is: `train/step` counts optimizer steps, `steps_per_rollout` of them
per rollout (rollout batch x samples per prompt / global batch, as miles computes it). A rollout that
is generated but not yet trained is shown beside it. With `final_save` (miles always saves after the
last rollout when --save-interval is set: miles/utils/misc.py:147-148), "all steps done" waits for
that checkpoint's end line; until then the line says the final checkpoint is being written.

On a terminal the progress is one status line kept under the log lines (StatusLine); elsewhere
one plain line per step.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runner.gate.metrics import NOT_EVENT_FILES

if TYPE_CHECKING:
    from runner.plan.spec import Launch

# a miles metrics line: the kind and its step (train step K, or rollout K)
_METRIC_LINE = re.compile(r" - (?P<kind>step|perf|rollout) (?P<k>\d+): \{")
_SAVE_START = re.compile(r"\] saving checkpoint at iteration +(?P<it>\d+) to ")
_SAVE_END = re.compile(r"\] successfully saved checkpoint from iteration +(?P<it>\d+) to ")


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Steps trained so far, from an events directory and a job log, and when each was first seen."""

    def __init__(self, events_dir: Path, total: int, now=time.monotonic, log: Path | None = None,
                 steps_per_rollout: int = 1, final_save: bool = False) -> None:
        self.events_dir = Path(events_dir)
        self.log = log
        self.total = total
        self.steps_per_rollout = max(1, steps_per_rollout)
        self.final_save = final_save
        self.now = now
        self.started = now()
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}
        self.max_step = {"rollout/step": -1, "train/step": -1}
        self.saving: int | None = None   # the iteration whose checkpoint is being written
        self.saved = -1                  # the last iteration whose checkpoint was written
        self.seen: list[tuple[int, float]] = []   # (steps done, when first seen)
        self.shown = 0   # the last step given a plain line (off a terminal)
        self.shown_saving: int | None = None   # the save last given a plain line

    @classmethod
    def of(cls, launch: Launch, now=time.monotonic) -> Progress:
        """The progress of a launch: its run directory's events and log, its steps per rollout, and
        whether miles saves a final checkpoint (--save with --save-interval)."""
        from runner.recipe import args_to_dict

        a = args_to_dict(launch.plan.argv)
        try:
            spr = int(a["--rollout-batch-size"]) * int(a["--n-samples-per-prompt"]) // int(a["--global-batch-size"])
        except (KeyError, ValueError, TypeError, ZeroDivisionError):
            spr = 1
        return cls(launch.run_dir / "events", launch.options.num_rollout, now=now,
                   log=launch.run_dir / "logs" / "run.log", steps_per_rollout=spr,
                   # only Megatron's save lines are known (a TRL run's checkpoints are not awaited)
                   final_save=launch.recipe.framework == "miles" and "--save" in a and "--save-interval" in a)

    @property
    def generated(self) -> int:
        return min(self.total, self.max_step["rollout/step"] + 1)

    @property
    def done(self) -> int:
        return min(self.total, (self.max_step["train/step"] + 1) // self.steps_per_rollout)

    @property
    def finished(self) -> bool:
        """Every step trained, and the final checkpoint (if one is due) written."""
        return self.done >= self.total and (not self.final_save or self.saved >= self.total - 1)

    def poll(self) -> bool:
        """Read what the event files and the log gained; True when the number of steps done grew."""
        before = self.done
        if self.events_dir.is_dir():
            for path in sorted(self.events_dir.glob("*.jsonl")):
                if path.name not in NOT_EVENT_FILES:
                    self._read_new(path, self._take_event)
        if self.log is not None and self.log.is_file():
            self._read_new(self.log, self._take_log_line)
        if self.done > before:
            self.seen.append((self.done, self.now()))
            return True
        return False

    def _read_new(self, path: Path, take) -> None:
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
            take(raw)

    def _step(self, key: str, step: object) -> None:
        if isinstance(step, int) and not isinstance(step, bool) and step > self.max_step[key]:
            self.max_step[key] = step

    def _take_event(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("type") != "metric" or not isinstance(event.get("metrics"), dict):
            return
        for key in self.max_step:
            self._step(key, event["metrics"].get(key))

    def _take_log_line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace")
        if m := _METRIC_LINE.search(line):
            self._step("train/step" if m["kind"] == "step" else "rollout/step", int(m["k"]))
        elif m := _SAVE_START.search(line):
            self.saving = int(m["it"])
        elif m := _SAVE_END.search(line):
            self.saved = max(self.saved, int(m["it"]))
            self.saving = None

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
        ahead = f" (step {self.generated} generated)" if step is None and self.generated > done else ""
        left = self.remaining_s()
        if self.saving is not None and done >= self.done:   # an earlier step's line is not about the save
            tail = (f"saving the checkpoint of step {self.saving + 1}" if self.saving < self.total - 1
                    else "saving the final checkpoint")
        elif done >= self.total:
            tail = "all steps done" if self.finished else "all steps trained, final checkpoint not yet saved"
        elif left is None:
            tail = "estimate after the next step" if self.seen else "estimate after two steps"
        else:
            tail = f"about {clock(left)} left"
        return f"step {done}/{self.total}{ahead}, elapsed {elapsed}, {tail}"


def steps_done(launch: Launch) -> int:
    """How many steps a run's events and log show trained: where an interrupted run stopped."""
    progress = Progress.of(launch)
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
    new_steps = range(progress.shown + 1, progress.done + 1)
    for step in new_steps:
        plain(progress.text(step))
    progress.shown = max(progress.shown, progress.done)
    if progress.saving is not None and progress.saving != progress.shown_saving:   # a save takes minutes
        if not new_steps:   # else the current step's line just said it
            plain(progress.text())
        progress.shown_saving = progress.saving
