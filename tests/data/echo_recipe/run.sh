#!/usr/bin/env bash
# Test recipe: writes miles-format metric events derived from the seed. TEST_SLEEP makes it wait
# (to be interrupted); TEST_BAD=1 makes the loss NaN (to fail the gate); TEST_CORRUPT=1 writes a
# line that is not JSON before the last one (the gate cannot read the events); TEST_EXTRA_EVENTS=N
# adds N more events (a gate that takes a while to read them). TEST_SAY prints that line first (a
# log line the runner may watch for; %b escapes such as \033 are expanded); TEST_TOOL_SAY prints
# its line through launch.sh's recipe_tool (a tool's banner); TEST_STEP_SLEEP=S waits S seconds
# before each step's events; TEST_LEFTOVER=S leaves two `sleep S` children behind;
# TEST_FILL=N writes N zero bytes into the run directory (to fill its file system); TEST_EXIT=N
# exits N after TEST_SAY (a trainer that dies).
set -euo pipefail
: "${RECIPE_RUN_DIR:?}" "${RECIPE_SEED:=7}" "${RECIPE_NUM_ROLLOUT:=3}"
if [[ "${RECIPE_DRY_RUN:-0}" == 1 ]]; then
  printf '+ python3 train.py --seed %q --num-rollout %q --save-debug-event-data %q\n' \
    "$RECIPE_SEED" "$RECIPE_NUM_ROLLOUT" "$RECIPE_RUN_DIR/events"
  exit 0
fi
mkdir -p "$RECIPE_RUN_DIR/events"
# what the script was given, secrets left out (tests/test_replay_untrusted.py reads it)
env | grep -Ev "^(WANDB_API_KEY|HF_TOKEN)=" >"$RECIPE_RUN_DIR/env.txt" || true
echo "echo recipe: seed $RECIPE_SEED; token seen by the script: ${WANDB_API_KEY:-none}"
if [[ -n "${TEST_SAY:-}" ]]; then printf '%b\n' "$TEST_SAY"; fi
if [[ -n "${TEST_EXIT:-}" ]]; then exit "$TEST_EXIT"; fi
if [[ -n "${TEST_TOOL_SAY:-}" ]]; then
  # shellcheck source=../../../recipes/lib/launch.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/launch.sh"
  recipe_tool printf '%b\n' "$TEST_TOOL_SAY"
fi
if [[ -n "${TEST_LEFTOVER:-}" ]]; then
  # children the script leaves behind: one holding stdout open, one with its output redirected
  sleep "$TEST_LEFTOVER" &
  (sleep "$TEST_LEFTOVER" >/dev/null 2>&1 &)
fi
if [[ -n "${TEST_FILL:-}" ]]; then
  # fill the run directory's file system (a disk that runs full under the run)
  head -c "$TEST_FILL" /dev/zero >"$RECIPE_RUN_DIR/fill" 2>/dev/null || true
fi
if [[ -n "${TEST_SLEEP:-}" ]]; then
  : >"$RECIPE_RUN_DIR/started"
  sleep "$TEST_SLEEP"
fi
python3 - "$RECIPE_RUN_DIR/events/main.jsonl" "$RECIPE_SEED" "$RECIPE_NUM_ROLLOUT" <<'PY'
import json, random, sys, time
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
env = __import__("os").environ
bad = env.get("TEST_BAD") == "1"
with open(path, "w") as f:
    if env.get("TEST_CORRUPT") == "1":
        f.write("{not json\n")
    for i in range(int(env.get("TEST_EXTRA_EVENTS") or 0)):
        f.write(json.dumps({"type": "metric", "metrics": {"rollout/step": i % 3, "rollout/extra": i},
                            "source": {"process": "main"}}) + "\n")
    for step in range(n):
        if env.get("TEST_STEP_SLEEP"):
            time.sleep(float(env["TEST_STEP_SLEEP"]))
        loss = float("nan") if bad else rng.random()
        for metrics in ({"train/step": step, "train/loss": None if bad else loss, "train/grad_norm": rng.random()},
                        {"rollout/step": step, "rollout/response_len/mean": 10 + rng.random(),
                         "perf/step_time": time.time()}):
            f.write(json.dumps({"type": "metric", "metrics": metrics, "timestamp": time.time(),
                                "source": {"process": "main"}}) + "\n")
        f.flush()
PY
