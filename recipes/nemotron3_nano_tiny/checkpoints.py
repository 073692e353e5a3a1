"""The tiny trainer's checkpoints: which ones are complete, and a stop that saves first.

Hugging Face's Trainer writes checkpoint-<step>/ (weights, optimizer, scheduler, the python/numpy/torch
RNG states, trainer_state.json with the step) straight into its final name, so a run killed while
saving leaves a directory that looks whole. The trainer therefore marks a checkpoint complete only
after every file is written (COMPLETE, written under a temporary name then renamed), and a resume
takes the newest marked checkpoint, naming any unmarked one it passes over.

The data position needs no file of its own: the prompt order is a pure function of --rollout-seed
(RepeatSampler with its own generator), and the Trainer skips the batches of the steps already
trained before it restores the RNG states, so the resumed run draws the same prompts and samples.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

COMPLETE = "complete"  # the marker file: present only in a checkpoint whose every file was written
_NAME = re.compile(r"^checkpoint-([0-9]+)$")


def mark_complete(checkpoint: Path, step: int) -> None:
    tmp = checkpoint / f".{COMPLETE}.tmp"
    tmp.write_text(f"{step}\n")
    os.replace(tmp, checkpoint / COMPLETE)


def latest_complete(directory: Path) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint under `directory` and the incomplete ones newer than it."""
    found = []
    for p in directory.iterdir() if directory.is_dir() else ():
        m = _NAME.match(p.name)
        if m and p.is_dir() and not p.is_symlink():
            found.append((int(m.group(1)), p))
    skipped = []
    for _, p in sorted(found, reverse=True):
        if (p / COMPLETE).is_file():
            return p, skipped
        skipped.append(p)
    return None, skipped


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGUSR1 (Ctrl-C's cousin from `ray job stop`, or Slurm's --signal before the wall):
    finish the optimizer step under way, save a checkpoint, and stop; `stopped` tells main to exit 143."""

    def __init__(self) -> None:
        self.stopped = False
        self._pending = False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        print(f"train_grpo: signal {signum}: saving a checkpoint after this step, then stopping",
              file=sys.stderr, flush=True)
        self._pending = True

    def on_step_end(self, args, state, control, **kwargs):
        if self._pending:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control


class MarkComplete(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written all of it (on_save runs after)."""

    def on_save(self, args, state, control, **kwargs):
        mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)
