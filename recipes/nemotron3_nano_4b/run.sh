#!/usr/bin/env bash
# nemotron3_nano_4b: GRPO of the dense Nemotron-3-Nano-4B-BF16 with miles, run on the head node inside
# the pinned image. `recipe run` sets the RECIPE_* variables below from recipe.toml; by hand,
# set them (`recipe plan nemotron3_nano_4b` prints them). RECIPE_DRY_RUN=1 prints each command instead.
#
# The shared miles GRPO blocks live in ../lib/miles_grpo.sh; this file holds only what differs,
# as the 4B row of upstream's `_RECIPES` (scripts/run_nemotron_3_nano.py, miles 78527b91).
# Model flags come verbatim from model_args.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/launch.sh
source "$here/../lib/launch.sh"
# shellcheck source=../lib/miles_grpo.sh
source "$here/../lib/miles_grpo.sh"

# ---- what differs from the shared blocks (upstream's 4B `_Recipe`) -------------------------
# 8 samples x 4096 tokens, global batch 256; no recompute, no log-prob chunking, and no rollout
# routing replay (dense: there is no router to replay). No --use-miles-router: upstream's launcher
# does not pass it.
GRPO_N_SAMPLES_PER_PROMPT=8 GRPO_ROLLOUT_MAX_RESPONSE_LEN=4096 GRPO_GLOBAL_BATCH_SIZE=256
GRPO_RECOMPUTE=0 GRPO_LOG_PROBS_CHUNK_SIZE=
GRPO_SGLANG_EXTRA=()

miles_grpo_launch "$here"
