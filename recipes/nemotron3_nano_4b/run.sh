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

# ---- values recipe.toml states (`recipe run` passes them; nothing is re-defaulted here) ----
recipe_require RECIPE_MODEL_DIR RECIPE_DATA_DIR RECIPE_OUTPUT_DIR RECIPE_RUN_DIR RECIPE_RUN_ID \
  RECIPE_TP RECIPE_PP RECIPE_CP RECIPE_EP RECIPE_ETP RECIPE_SP RECIPE_MAX_TOKENS_PER_GPU \
  RECIPE_NODES RECIPE_GPUS_PER_NODE RECIPE_NUM_ROLLOUT RECIPE_SEED RECIPE_ROLLOUT_SEED RECIPE_DETERMINISTIC
# Where the image has miles and Megatron, and the optional cluster/wandb settings.
: "${RECIPE_MILES_DIR:=/root/miles}" "${RECIPE_MEGATRON_DIR:=/root/Megatron-LM}"
: "${MASTER_ADDR:=127.0.0.1}"
# RECIPE_RAY_ADDRESS: join an existing cluster (multi-node); otherwise a head is started here.
: "${RECIPE_RAY_ADDRESS:=}"
# RECIPE_WANDB_PROJECT turns on wandb; its key is read from WANDB_API_KEY by wandb itself.
: "${RECIPE_WANDB_PROJECT:=}" "${RECIPE_WANDB_GROUP:=$RECIPE_RUN_ID}"

# ---- what differs from the shared blocks (upstream's 4B `_Recipe`) -------------------------
# 8 samples x 4096 tokens, global batch 256; no recompute, no log-prob chunking, and no rollout
# routing replay (dense: there is no router to replay). No --use-miles-router: upstream's launcher
# does not pass it.
GRPO_N_SAMPLES_PER_PROMPT=8 GRPO_ROLLOUT_MAX_RESPONSE_LEN=4096 GRPO_GLOBAL_BATCH_SIZE=256
GRPO_RECOMPUTE=0 GRPO_LOG_PROBS_CHUNK_SIZE=
GRPO_SGLANG_EXTRA=()

miles_grpo_launch "$here"
