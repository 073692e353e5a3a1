"""miles-format metric events from TRL's logs: one JSON line per metric call, per process file.

miles' `--save-debug-event-data DIR` writes `{"type": "metric", "metrics": {...}, "timestamp": ...,
"source": {...}}` lines to DIR/<process>.jsonl. The tiny recipe writes the same lines, under the same
metric names, so one parser and one gate serve both recipes:

    rollout_manager.jsonl     rollout/*  (keyed by rollout/step)
    actor_cell0_rank0.jsonl   train/*    (keyed by train/step)
    main.jsonl                perf/*     (keyed by rollout/step)

Values are the exact floats (json writes repr, which round-trips), so reruns compare bit for bit;
NaN and inf become null, as in miles.
Only `timestamp` and perf/* carry wall-clock time.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

# TRL log key -> miles metric name
TRAIN_KEYS = {
    "loss": "train/loss",
    "pg_loss": "train/pg_loss",
    "clip_ratio/region_mean": "train/pg_clipfrac",
    "ppo_kl": "train/ppo_kl",
    "grad_norm": "train/grad_norm",
    "train_rollout_logprob_abs_diff": "train/train_rollout_logprob_abs_diff",
    "entropy": "train/entropy_loss",
    "learning_rate": "train/lr",
}
ROLLOUT_KEYS = {
    "reward": "rollout/raw_reward",
    "completions/mean_length": "rollout/response_len/mean",
    "completions/max_length": "rollout/response_len/max",
    "completions/clipped_ratio": "rollout/truncated_ratio",
    "zero_std/all_zero_percentage": "rollout/zero_std/all_zero_percentage",
    "zero_std/all_one_percentage": "rollout/zero_std/all_one_percentage",
    "frac_reward_zero_std": "rollout/zero_std/all_same_percentage",  # any reward value, not only 0/1
}
PERF_KEYS = {"step_time": "perf/actor_train_time", "rollout_time": "perf/rollout_time"}
NONDETERMINISTIC = ("perf/*",)  # wall-clock; everything else must replay bit for bit
# event file -> miles' `source` object (its process identity), which readers use to rank processes
SOURCES = {
    "main": {"component": "main"},
    "rollout_manager": {"component": "rollout_manager"},
    "actor_cell0_rank0": {"component": "actor", "cell_index": 0, "rank_within_cell": 0},
}


class EventWriter:
    """Appends metric events to <dir>/<process>.jsonl, flushing each line (a crash keeps what was logged)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, object] = {}

    def log(self, process: str, metrics: dict[str, float]) -> None:
        f = self._files.get(process)
        if f is None:
            # "w": a rerun into the same directory must not mix in a previous run's lines
            f = self._files[process] = (self.dir / f"{process}.jsonl").open("w")
        # miles (pydantic) writes NaN/inf as null; so do we, keeping the lines strict JSON
        metrics = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        event = {"type": "metric", "metrics": metrics, "timestamp": time.time(),
                 "source": {**SOURCES[process], "framework": "trl"}}
        f.write(json.dumps(event, sort_keys=True) + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class MilesEventsCallback(TrainerCallback):
    """Maps TRL's per-optimizer-step logs to miles' train/*, rollout/* and perf/* events.

    train/step counts optimizer steps, rollout/step rollouts (both from 0, as miles); with
    `steps_per_rollout` optimizer steps per rollout, rollout and perf events are written once per
    rollout, at its last optimizer step (perf/step_time then spans the whole rollout)."""

    def __init__(self, writer: EventWriter, steps_per_rollout: int = 1):
        self.writer = writer
        self.steps_per_rollout = steps_per_rollout
        self._rollout_start = 0.0
        self._rollout: dict[str, float] = {}
        self._perf: dict[str, float] = {}

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step % self.steps_per_rollout == 0:
            self._rollout_start = time.perf_counter()
            self._rollout, self._perf = {}, {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "grad_norm" not in logs:  # the end-of-training summary (train_runtime, ...) is not a step
            return
        step = state.global_step - 1
        train = {m: float(logs[k]) for k, m in TRAIN_KEYS.items() if k in logs}
        train["train/step"] = step
        self.writer.log("actor_cell0_rank0", train)
        # rollout metrics are logged by TRL at the optimizer step that generated them
        self._rollout.update({m: float(logs[k]) for k, m in ROLLOUT_KEYS.items() if k in logs})
        self._rollout.update({f"rollout/zero_std/{k.split('/', 1)[1]}": float(v) for k, v in logs.items()
                              if k.startswith("zero_std/count_")})
        self._perf.update({m: float(logs[k]) for k, m in PERF_KEYS.items() if k in logs})
        if state.global_step % self.steps_per_rollout == 0:
            rollout_step = step // self.steps_per_rollout
            self.writer.log("rollout_manager", {**self._rollout, "rollout/step": rollout_step})
            self.writer.log("main", {**self._perf, "perf/step_time": time.perf_counter() - self._rollout_start,
                                     "rollout/step": rollout_step})
