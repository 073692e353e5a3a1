"""Run in the upstream venv (tests/upstream_stack.py) by tests/test_upstream_log_lines.py: calls miles' REAL
metric-logging functions on CPU and writes what they print, per process, and what they hand to miles'
tracking (the values a tracker records), so the test can read the lines back with the gate's parser.

  python3 miles_log_lines.py OUT_DIR

OUT_DIR/rollout_manager.log, OUT_DIR/actor_cell0_rank0.log: each process's log output exactly as miles'
configure_logger_raw formats it (Ray forwards a worker's stdout/stderr line by line).
OUT_DIR/tracked.jsonl: one line per tracking.log call: {"step_key", "metrics": {name: [type, text]}},
floats as float.hex, so the test compares bit for bit.

The functions (radixark/miles @78527b91): miles/ray/rollout/metrics.py log_rollout_data ("perf K: {...}",
line 89) and log_eval_rollout_data ("eval K: {...}"); miles/backends/training_utils/log_utils.py
log_rollout_data -> gather_log_data ("rollout K: {...}", line 123) and log_train_step ("step K: {...}",
line 542). The actor's collectives run on a single-process gloo group (world size 1), as one DP rank.
"""

from __future__ import annotations

import io
import json
import math
import sys
import tempfile
import traceback
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from miles.backends.training_utils import log_utils
from miles.backends.training_utils.parallel import ParallelState, set_parallel_state
from miles.ray.rollout import metrics as rollout_metrics
from miles.utils import logging_utils
from miles.utils.ft_utils.process_group_utils import GroupInfo
from miles.utils.tracking_utils import tracking
from miles.utils.types import Sample

OUT = Path(sys.argv[1])
ROLLOUTS = 3
STEPS_PER_ROLLOUT = 2

# values that stress a reader: non-finite, signed zero, tiny, huge, numpy scalars, names with '/' and '@'
STRESS = {
    "nan": math.nan, "inf": math.inf, "neg_inf": -math.inf, "neg": -0.42007394521599944, "neg_zero": -0.0,
    "tiny": 1e-12, "subnormal": 5e-324, "max": 1.7976931348623157e308, "third": 1 / 3,
    "big_int": 2**63 + 1, "huge_int": 10**400, "np_f64": np.float64(0.1) + np.float64(0.2),
    "np_i64": np.int64(-(2**62)), "np_f32": np.float32(0.1), "pass@k/pass@16": 0.8125,
}

tracked = open(OUT / "tracked.jsonl", "w")
real_log = tracking.log


def _encode(v):
    if isinstance(v, bool):
        return ["bool", str(v)]
    if isinstance(v, int | np.integer):
        return ["int", str(int(v))]
    if isinstance(v, float | np.floating):
        return ["float", float(v).hex()]
    return ["other", repr(v)]


def recording_log(args, metrics, step_key):
    tracked.write(json.dumps({"step_key": step_key, "metrics": {k: _encode(v) for k, v in metrics.items()}}) + "\n")
    return real_log(args, metrics, step_key)


sys.excepthook = lambda *exc: traceback.print_exception(*exc, file=sys.__stderr__)
tracking.log = recording_log   # the modules call tracking.log(...) through the module


def process(name: str):
    """Miles' own logging set-up for a process named `name`, writing into a fresh buffer."""
    buf = io.StringIO()
    # logging.basicConfig's StreamHandler takes sys.stderr as it is now (a traceback: sys.excepthook)
    sys.stderr = buf
    logging_utils._LOGGER_CONFIGURED = False
    logging_utils.configure_logger_raw(name)
    return buf


args = Namespace(
    custom_rollout_log_function_path=None, custom_eval_rollout_log_function_path=None,
    load_debug_rollout_data=False, log_passrate=True, n_samples_per_prompt=4, n_samples_per_eval_prompt=1,
    advantage_estimator="grpo", reward_key=None, sglang_speculative_algorithm=None, log_reward_category=None,
    rollout_num_gpus=4, use_session_server=None, ci_test=False, wandb_always_use_train_step=False,
    rollout_batch_size=2, global_batch_size=4, qkv_format="thd", use_dynamic_batch_size=False,
    log_multi_turn=False, log_correct_samples=False,
)


def samples(rollout_id: int) -> list[Sample]:
    out = []
    for g in range(2):
        for i in range(4):
            s = Sample(group_index=g, index=g * 4 + i, rollout_id=rollout_id, response="abc " * (i + 1),
                       response_length=7 * (i + 1) + rollout_id, reward=float(g == 0 and i % 2),
                       status=Sample.Status.TRUNCATED if i == 3 else Sample.Status.COMPLETED)
            s.prefix_cache_info.cached_tokens = 3 * i
            s.prefix_cache_info.total_prompt_tokens = 20
            out.append(s)
    return out


# -- the rollout manager: perf K (and eval K) ------------------------------------------------------
buf = process("rollout_manager")
for rid in range(ROLLOUTS):
    extra = {f"rollout/stress/{k}": v for k, v in STRESS.items()}
    rollout_metrics.log_rollout_data(rid, args, samples(rid), extra, rollout_time=38.27925546060902 + rid)
    rollout_metrics.log_eval_rollout_data(rid, args, {"gsm8k": {"rewards": [1.0, 0.0, None], "truncated": [0, 1, 0]}})
(OUT / "rollout_manager.log").write_text(buf.getvalue())

# -- one train actor: rollout K and step K ------------------------------------------------------
dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/store", rank=0, world_size=1)
pg = dist.new_group([0], backend="gloo")
one = GroupInfo(rank=0, size=1, group=pg, gloo_group=pg)
set_parallel_state(ParallelState(intra_dp=one, intra_dp_cp=one, cp=one, tp=one, pp=one, ep=one, etp=one,
                                 indep_dp=one))
buf = process("actor_cell0_rank0")
for rid in range(ROLLOUTS):
    log_utils.log_rollout_data(rid, args, {
        "response_lengths": [3, 4], "total_lengths": [5, 6],
        "loss_masks": [torch.ones(3), torch.ones(4)],
        "raw_reward": [0.25, 1.0 + rid], "truncated": [0, 1],
        "rollout_time_like": [torch.tensor([1.5, 2.25]), torch.tensor([-3.0])],
    })
    # gather_log_data itself, with the stress values as (sum, count) pairs of count 1 (sum / 1 is exact)
    log_utils.gather_log_data("rollout", args, rid, {f"stress_actor/{k}": (v, 1) for k, v in STRESS.items()
                                                     if not isinstance(v, int | np.integer)})
    for step in range(STEPS_PER_ROLLOUT):
        grad = math.nan if (rid, step) == (1, 1) else 0.5 ** (rid + step)
        log_utils.log_train_step(
            args, {"loss": torch.tensor([0.25, -0.75 * rid]), "pg_loss": -1e-12, "entropy_loss": 10**20,
                   "pg_clipfrac": np.float64(1 / 3)},
            grad, rid, step, STEPS_PER_ROLLOUT, extra_metrics={"lr-pg_0": 1e-6 * (step + 1), "big/int@max": 2**53 + 1})
(OUT / "actor_cell0_rank0.log").write_text(buf.getvalue())
dist.destroy_process_group()
sys.stderr = sys.__stderr__
tracked.close()
