#!/usr/bin/env bash
# nemotron3_nano: GRPO of Nemotron-3-Nano-30B-A3B-BF16 with miles, run on the head node inside
# the pinned image. `recipe run` sets the RECIPE_* variables below from recipe.toml; by hand,
# set them (`recipe plan nemotron3_nano` prints them). RECIPE_DRY_RUN=1 prints each command instead.
#
# The shared miles GRPO blocks live in ../lib/miles_grpo.sh; this file holds only what differs,
# as the 30B row of upstream's `_RECIPES` (scripts/run_nemotron_3_nano.py, miles 78527b91).
# Model flags come verbatim from model_args.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/launch.sh
source "$here/../lib/launch.sh"
# shellcheck source=../lib/miles_grpo.sh
source "$here/../lib/miles_grpo.sh"

# ---- what differs from the shared blocks (upstream's 30B `_Recipe`) ------------------------
GRPO_N_SAMPLES_PER_PROMPT=4 GRPO_ROLLOUT_MAX_RESPONSE_LEN=1024 GRPO_GLOBAL_BATCH_SIZE=128
GRPO_RECOMPUTE=1 GRPO_LOG_PROBS_CHUNK_SIZE=128
GRPO_SGLANG_EXTRA=(
  # miles' own Python HTTP router (MilesRouter) in front of the SGLang engines instead of the Rust
  # sgl-router (miles/ray/rollout/router_manager.py, miles 78527b91). It is NOT routing replay. Kept
  # because the seed recipe passes it; upstream's launcher at that commit no longer does
  # (scripts/run_nemotron_3_nano.py). `recipe lint` notes it.
  --use-miles-router
  # Rollout routing replay (R3): training replays the experts SGLang chose, so train and rollout
  # log-probs stay aligned for the sigmoid-routed MoE.
  --use-rollout-routing-replay
)

miles_grpo_launch "$here"
