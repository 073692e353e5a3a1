#!/usr/bin/env python3
"""Write the expected-metrics gate's controls: miles event logs (and one stdout log) of a
nemotron3_nano-shaped 10-rollout run, healthy and broken in known ways.

    python tests/data/make_metric_controls.py            # (re)writes tests/data/events/*, tests/data/stdout/*
    python tests/data/make_metric_controls.py --check    # exit 1 if the committed files differ

The files follow miles v0.1.0's `--save-debug-event-data` format exactly: one file per process
(`main.jsonl`, `rollout_manager.jsonl`, `actor_cell0_rank{N}.jsonl`), one compact JSON object per
line with the fields in pydantic's order (timestamp, source, type, rollout_id, attempt, metrics),
floats in pydantic-core's notation, NaN and inf written as null. (Checked once against miles
v0.1.0's own Event model: every line validates and re-serializes byte for byte.)

Who logs what mirrors miles on the default cell (TP2 PP2 EP2, DP2): rank 4 (first TP rank, last
PP stage, first DP replica) logs train/* and the trainer's perf/*; ranks 0 and 4 (DP-source ranks
of each PP stage's TP-rank-0) both log the trainer-side rollout/* values, identically; the rollout
manager logs rollout/response_len/*, zero_std/*, truncated_ratio and the generation perf/*; main
logs only non-metric events.

Values are simulated with a fixed seed (32 groups x 4 samples of 0/1 reward, response lengths
capped at 1024) so that derived metrics agree with their inputs. Controls:
  healthy          logprob diff 0.0131-0.0144 (upstream's default cell), finite, 10 rollouts
  router_scale_1   the trainer runs the router at scale 1.0, not 2.5: logprob diff ~0.28
  nan_grad_norm    grad norm NaN (null) at train step 5
  stopped_after_6  the job died during rollout 6: 6 full rollouts and a partial last line
  slow_30pct       healthy, value for value, except that every step takes 1.3x as long: the perf/*
                   times x1.3 and the throughputs (tokens/s, tflops) /1.3, as an image or cell change
                   that costs 30% would. Passes every rule while no reference is blessed; with
                   healthy blessed it fails exactly the three speed rules (step_time_vs_reference,
                   rollout_throughput_vs_reference, train_throughput_vs_reference)
and tests/data/stdout/{healthy,nan_grad_norm}/logs/run.log: those runs as miles prints them to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "data" / "events"
STDOUT = ROOT / "tests" / "data" / "stdout"
SEED = 20260821
NUM_ROLLOUT = 10
GROUPS, SAMPLES, MAX_LEN = 32, 4, 1024
T0 = dt.datetime(2026, 8, 21, 10, 0, 0, tzinfo=dt.UTC)

MAIN = {"component": "main"}
ROLLOUT_MANAGER = {"component": "rollout_manager"}


def actor(rank: int) -> dict:
    return {"component": "actor", "cell_index": 0, "rank_within_cell": rank}


def stamp(seconds: float) -> str:
    # pydantic writes an aware UTC datetime as ISO 8601 with a trailing Z
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def event(t: float, source: dict, **fields) -> dict:
    return {"timestamp": stamp(t), "source": source, **fields}


def metric_event(t: float, source: dict, metrics: dict) -> dict:
    # pydantic serializes NaN and inf as null
    metrics = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}
    return event(t, source, type="metric", rollout_id=None, attempt=None, metrics=metrics)


def dumps(obj) -> str:
    """JSON as pydantic-core writes it: compact, and floats in its (ryu-style) notation, e.g. 1e-6,
    0.00005796, 1.5e+17, 20.0 - where Python's json would write 1e-06 and 5.796e-05."""
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    if isinstance(obj, float):
        return pydantic_float(obj)
    return json.dumps(obj)


def pydantic_float(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    digits_t = decimal.Decimal(repr(abs(x))).normalize().as_tuple()   # repr: the shortest round-trip digits
    d, exp = "".join(map(str, digits_t.digits)), digits_t.exponent
    n, kk = len(d), len(d) + exp          # value = 0.d * 10**kk
    if exp >= 0 and kk <= 16:
        s = d + "0" * (kk - n) + ".0"
    elif 0 < kk <= 16:
        s = f"{d[:kk]}.{d[kk:]}"
    elif -5 < kk <= 0:
        s = "0." + "0" * -kk + d
    else:
        mantissa = d if n == 1 else f"{d[0]}.{d[1:]}"
        s = f"{mantissa}e{'+' if kk > 1 else ''}{kk - 1}"
    return ("-" if x < 0 else "") + s


def simulate(rng: random.Random, rollout: int, diff_range: tuple[float, float], nan_grad_step: int | None):
    """One rollout's metric dicts, as the four miles call sites build them (and in their key order)."""
    p_correct = 0.10 + 0.01 * rollout
    rewards = [[1 if rng.random() < p_correct else 0 for _ in range(SAMPLES)] for _ in range(GROUPS)]
    lengths = [min(MAX_LEN, int(rng.lognormvariate(6.55, 0.45))) for _ in range(GROUPS * SAMPLES)]
    flat = [r for g in rewards for r in g]
    n = len(flat)
    zero_std = [g for g in rewards if all(r == g[0] for r in g)]
    counts: dict[str, int] = {}
    for g in zero_std:
        counts[str(round(float(g[0]), 1))] = counts.get(str(round(float(g[0]), 1)), 0) + 1
    srt = sorted(lengths)
    median = (srt[n // 2 - 1] + srt[n // 2]) / 2
    rollout_time = 38.0 + rng.random() * 6
    gen = {
        "rollout/response_len/mean": sum(lengths) / n,
        "rollout/response_len/median": float(median),
        "rollout/response_len/max": float(max(lengths)),
        "rollout/response_len/min": float(min(lengths)),
        **{f"rollout/zero_std/count_{k}": v for k, v in counts.items()},
        "rollout/zero_std/all_zero_percentage": counts.get("0.0", 0) / GROUPS,
        "rollout/zero_std/all_one_percentage": counts.get("1.0", 0) / GROUPS,
        "rollout/prefix_cache_hit_rate": 0.0,
        "rollout/avg_cached_tokens_per_sample": 0.0,
        "rollout/repetition_frac": sum(1 for _ in range(n) if rng.random() < 0.03) / n,
        "rollout/truncated_ratio": sum(1 for x in lengths if x >= MAX_LEN) / n,
        "perf/rollout_time": rollout_time,
        "perf/tokens_per_gpu_per_sec": sum(lengths) / rollout_time / 8,
        "perf/longest_sample_tokens_per_sec": max(lengths) / rollout_time,
        "perf/effective_tokens_per_gpu_per_sec": sum(lengths) / rollout_time / 8,
        "perf/longest_effective_sample_tokens_per_sec": max(lengths) / rollout_time,
    }
    log_probs = -0.42 + rng.gauss(0, 0.01)
    trainer_rollout = {
        "rollout/log_probs": log_probs,
        "rollout/ref_log_probs": log_probs if rollout == 0 else log_probs + rng.gauss(0, 2e-4),
        "rollout/rollout_log_probs": log_probs + rng.gauss(0, 1e-3),
        "rollout/advantages": rng.gauss(0, 1e-3),
        "rollout/returns": rng.gauss(0, 1e-3),
        "rollout/raw_reward": sum(flat) / n,
        "rollout/rewards": 0.0,
        "rollout/response_lengths": sum(lengths) / n,
        "rollout/total_lengths": sum(lengths) / n + 180.0,
        "rollout/truncated": sum(1 for x in lengths if x >= MAX_LEN) / n,
    }
    lo, hi = diff_range
    pg_loss = rng.gauss(0, 2e-3)
    train = {
        "train/loss": pg_loss,
        "train/pg_loss": pg_loss,
        "train/entropy_loss": 0.41 + rng.gauss(0, 0.02),
        "train/pg_clipfrac": 0.0,
        "train/ppo_kl": 0.0,
        "train/train_rollout_logprob_abs_diff": lo + (hi - lo) * rng.random(),
        "train/train_rollout_kl": (lo + hi) / 2 * 0.02 * (1 + rng.random()),
        "train/kl_loss": 0.0 if rollout == 0 else 1e-5 * rollout * (1 + rng.random()),
        "train/grad_norm": float("nan") if rollout == nan_grad_step else 0.08 + 0.1 * rng.random(),
        "train/lr-pg_0": 1e-06,
        "train/lr-pg_1": 1e-06,
        "train/step": rollout,
    }
    train_time = 52.0 + 4 * rng.random()
    wait = 41.0 + 4 * rng.random()
    tok = sum(lengths) + 180 * n
    perf = {
        "perf/sleep_time": 0.8 + rng.random() * 0.2,
        "perf/update_weights_time": 6.0 + rng.random(),
        "perf/data_preprocess_time": 0.3 + rng.random() * 0.1,
        "perf/log_probs_time": 7.0 + rng.random(),
        "perf/ref_log_probs_time": 7.0 + rng.random(),
        "perf/actor_train_time": train_time - 16.0,
        "perf/train_wait_time": wait,
        "perf/train_time": train_time,
        "perf/log_probs_tflops": 130.0 + rng.random() * 10,
        "perf/ref_log_probs_tflops": 130.0 + rng.random() * 10,
        "perf/actor_train_tflops": 120.0 + rng.random() * 10,
        "perf/actor_train_tok_per_s": tok / (train_time - 16.0),
        "perf/mfu_peak_tflops": 989.0,
        "perf/actor_train_mfu": 0.12 + rng.random() * 0.01,
        "perf/step_time": wait + train_time,
        "perf/wait_time_ratio": wait / (wait + train_time),
    }
    return gen, trainer_rollout, train, perf


SLOWDOWN = 1.3
# perf/* keys that are durations (scaled up) or rates (scaled down) in a slower run; the rest
# (mfu_peak_tflops, wait_time_ratio) are constants or ratios of two durations, unchanged
PERF_TIMES = ("perf/rollout_time", "perf/sleep_time", "perf/update_weights_time", "perf/data_preprocess_time",
              "perf/log_probs_time", "perf/ref_log_probs_time", "perf/actor_train_time", "perf/train_wait_time",
              "perf/train_time", "perf/step_time")
PERF_RATES = ("perf/tokens_per_gpu_per_sec", "perf/longest_sample_tokens_per_sec",
              "perf/effective_tokens_per_gpu_per_sec", "perf/longest_effective_sample_tokens_per_sec",
              "perf/log_probs_tflops", "perf/ref_log_probs_tflops", "perf/actor_train_tflops",
              "perf/actor_train_tok_per_s", "perf/actor_train_mfu")


def slower(metrics: dict, factor: float) -> dict:
    return {k: v * factor if k in PERF_TIMES else v / factor if k in PERF_RATES else v for k, v in metrics.items()}


def build(control: str) -> tuple[dict[str, list[str]], list[str]]:
    """(event file name -> lines, stdout lines) of one control."""
    # slow_30pct draws healthy's numbers, then slows them down
    rng = random.Random(f"{SEED}-{'healthy' if control == 'slow_30pct' else control}")
    diff = (0.26, 0.30) if control == "router_scale_1" else (0.0131, 0.0144)
    nan_step = 5 if control == "nan_grad_norm" else None
    rollouts = 6 if control == "stopped_after_6" else NUM_ROLLOUT
    files: dict[str, list[dict]] = {"main.jsonl": [], "rollout_manager.jsonl": [],
                                    "actor_cell0_rank0.jsonl": [], "actor_cell0_rank4.jsonl": []}
    out: list[str] = []
    for r in range(rollouts):
        t = 100.0 * r
        gen, trainer_rollout, train, perf = simulate(rng, r, diff, nan_step)
        if control == "slow_30pct":
            gen, perf = slower(gen, SLOWDOWN), slower(perf, SLOWDOWN)
        files["rollout_manager.jsonl"].append(metric_event(t + 40, ROLLOUT_MANAGER, {**gen, "rollout/step": r}))
        for rank in (0, 4):
            files[f"actor_cell0_rank{rank}.jsonl"].append(
                metric_event(t + 58, actor(rank), {**trainer_rollout, "rollout/step": r}))
        files["actor_cell0_rank4.jsonl"].append(metric_event(t + 90, actor(4), train))
        files["actor_cell0_rank4.jsonl"].append(metric_event(t + 96, actor(4), {**perf, "rollout/step": r}))
        files["main.jsonl"].append(event(t + 97, MAIN, type="train_group_step_end", rollout_id=r,
                                         cell_outcomes={"0": ["normal"]}))
        # stdout: what each call site prints (its dict before the step key is added, except train)
        clock = (T0 + dt.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"(RolloutManager pid=2211) [{clock}.114 rollout_manager] metrics.py:89 - perf {r}: {gen}")
        for rank, pid in ((0, 2301), (4, 2305)):
            out.append(f"(MegatronTrainRayActor pid={pid}) [{clock}.530 actor_cell0_rank{rank}] "
                       f"log_utils.py:123 - rollout {r}: {trainer_rollout}")
        out.append(f"(MegatronTrainRayActor pid=2305) [{clock}.902 actor_cell0_rank4] "
                   f"log_utils.py:542 - step {r}: {train}")
        out.append(f"(MegatronTrainRayActor pid=2305) [{clock}.960 actor_cell0_rank4] "
                   f"train_metric_utils.py:56 - perf {r}: {perf}")
        out.append(f"(MegatronTrainRayActor pid=2305) [{clock}.961 actor_cell0_rank4] "
                   f"model.py:612 - Saved checkpoint? no (save_interval=20, rollout {r})")
    text = {name: [dumps(e) for e in evs] for name, evs in files.items()}
    if control == "stopped_after_6":
        # killed while writing rollout 6's trainer-side line: a partial last line
        gen, trainer_rollout, _, _ = simulate(rng, rollouts, diff, nan_step)
        text["rollout_manager.jsonl"].append(dumps(metric_event(100.0 * rollouts + 40, ROLLOUT_MANAGER,
                                                                {**gen, "rollout/step": rollouts})))
        full = dumps(metric_event(100.0 * rollouts + 58, actor(4), {**trainer_rollout, "rollout/step": rollouts}))
        text["actor_cell0_rank4.jsonl"].append(full[: len(full) // 2])
    return text, out


CONTROLS = ("healthy", "router_scale_1", "nan_grad_norm", "stopped_after_6", "slow_30pct")


def render() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for control in CONTROLS:
        events, stdout = build(control)
        for name, lines in events.items():
            # the partial last line of a killed process has no trailing newline
            end = "" if control == "stopped_after_6" and name == "actor_cell0_rank4.jsonl" else "\n"
            files[EVENTS / control / name] = "\n".join(lines) + end
        if control in ("healthy", "nan_grad_norm"):
            prelude = ["[recipe 10:00:00] ray head started (process group 4242)",
                       "Job submission server address: http://127.0.0.1:8265",
                       "(MegatronTrainRayActor pid=2305) WARNING: a line with braces {not: metrics}"]
            files[STDOUT / control / "logs" / "run.log"] = "\n".join(prelude + stdout) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    args = ap.parse_args(argv)
    files = render()
    if args.check:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
