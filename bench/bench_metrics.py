#!/usr/bin/env python3
"""How long collecting and gating a run's metrics takes, against just reading the JSON lines.

    .venv/bin/python bench/bench_metrics.py [--rollouts 10,100,1000] [--ranks 8]

Writes nemotron3_nano-shaped event logs (tests/data/make_metric_controls.py's simulation; every one of
--ranks actor ranks logs the trainer-side rollout/* values, as DP-source ranks do) and a stdout
log of the same run into a temp dir, then times: json.loads of every line (the floor any parser
pays), metrics.collect() on the events, on the stdout log, and gate.evaluate(). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "data")]  # make_metric_controls: the control series

import make_metric_controls as mc  # noqa: E402

from runner.gate import evaluate as gate  # noqa: E402
from runner.gate import metrics  # noqa: E402
from runner.gate.expected import load_expected  # noqa: E402


def write_run(d: Path, rollouts: int, ranks: int) -> None:
    import random

    rng = random.Random(1)
    files: dict[str, list[str]] = {"rollout_manager.jsonl": []}
    out: list[str] = []
    for r in range(rollouts):
        gen, trainer_rollout, train, perf = mc.simulate(rng, r % 50, (0.0131, 0.0144), None)
        train["train/step"] = r
        gen_event = mc.metric_event(r, mc.ROLLOUT_MANAGER, {**gen, "rollout/step": r})
        files["rollout_manager.jsonl"].append(mc.dumps(gen_event))
        for rank in range(ranks):
            files.setdefault(f"actor_cell0_rank{rank}.jsonl", []).append(
                mc.dumps(mc.metric_event(r, mc.actor(rank), {**trainer_rollout, "rollout/step": r})))
        files["actor_cell0_rank4.jsonl"] += [mc.dumps(mc.metric_event(r, mc.actor(4), train)),
                                             mc.dumps(mc.metric_event(r, mc.actor(4), {**perf, "rollout/step": r}))]
        out += [f"[t rollout_manager] metrics.py:89 - perf {r}: {gen}",
                *(f"[t actor_cell0_rank{k}] log_utils.py:123 - rollout {r}: {trainer_rollout}" for k in range(ranks)),
                f"[t actor_cell0_rank4] log_utils.py:542 - step {r}: {train}",
                f"[t actor_cell0_rank4] train_metric_utils.py:56 - perf {r}: {perf}"]
    (d / "events").mkdir()
    (d / "logs").mkdir()
    for name, lines in files.items():
        (d / "events" / name).write_text("\n".join(lines) + "\n")
    (d / "logs" / "run.log").write_text("\n".join(out) + "\n")


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(d: Path, n: int, ranks: int, exp) -> str:
    write_run(d, n, ranks)
    event_files = sorted((d / "events").glob("*.jsonl"))
    lines = [ln for f in event_files for ln in f.read_text().splitlines() if ln]
    mb = sum(f.stat().st_size for f in event_files) / 1e6
    t_json = best_of(lambda: [json.loads(ln) for f in event_files for ln in f.read_text().splitlines() if ln])
    t_events = best_of(lambda: metrics.collect(d))
    t_stdout = best_of(lambda: metrics.collect(d / "logs" / "run.log"))
    series = metrics.collect(d)
    t_eval = best_of(lambda: gate.evaluate(exp, series, None))
    assert series.key_steps("train/step") == list(range(n)) == series.key_steps("rollout/step")
    assert metrics.collect(d / "logs" / "run.log").values.keys() <= series.values.keys()
    return (f"{n:>8} {len(lines):>7} {mb:>6.2f} {t_json * 1e3:>9.1f}ms {t_events * 1e3:>14.1f}ms "
            f"{t_stdout * 1e3:>14.1f}ms {t_eval * 1e3:>7.1f}ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollouts", default="10,100,1000")
    ap.add_argument("--ranks", type=int, default=8)
    args = ap.parse_args()
    exp = load_expected(ROOT / "recipes" / "nemotron3_nano" / "expected_metrics.toml")
    print(f"{'rollouts':>8} {'lines':>7} {'MB':>6} {'json.loads':>11} {'collect(events)':>16} "
          f"{'collect(stdout)':>16} {'evaluate':>9}")
    for n in (int(x) for x in args.rollouts.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            print(measure(Path(tmp), n, args.ranks, exp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
