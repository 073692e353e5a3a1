#!/usr/bin/env bash
# nemotron3_nano: GRPO of Nemotron-3-Nano-30B-A3B-BF16 with miles, run on the head node inside
# the pinned image. `recipe run` sets the RECIPE_* variables below; by hand, the defaults are the
# recipe's default cell on 1 node x 8 H200. RECIPE_DRY_RUN=1 prints each command instead.
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

# ---- inputs -------------------------------------------------------------------------------
: "${RECIPE_INPUTS_DIR:=/root/miles_data/nemotron3_nano}"
: "${RECIPE_MODEL_DIR:=$RECIPE_INPUTS_DIR/model}"
: "${RECIPE_DATA_DIR:=$RECIPE_INPUTS_DIR/data}"
: "${RECIPE_OUTPUT_DIR:=/root/miles_data/nemotron3_nano_output}"
: "${RECIPE_RUN_DIR:=$RECIPE_OUTPUT_DIR/run}"
: "${RECIPE_RUN_ID:=nemotron3_nano-$$}"
# parallelism cell (default: TP2 PP2 CP1 EP2 ETP1 + SP)
: "${RECIPE_TP:=2}" "${RECIPE_PP:=2}" "${RECIPE_CP:=1}" "${RECIPE_EP:=2}" "${RECIPE_ETP:=1}"
: "${RECIPE_SP:=1}" "${RECIPE_MAX_TOKENS_PER_GPU:=1024}"
: "${RECIPE_NODES:=1}" "${RECIPE_GPUS_PER_NODE:=8}"
: "${RECIPE_NUM_ROLLOUT:=10}" "${RECIPE_SEED:=1234}" "${RECIPE_ROLLOUT_SEED:=42}"
: "${RECIPE_DETERMINISTIC:=0}"
: "${RECIPE_MILES_DIR:=/root/miles}" "${RECIPE_MEGATRON_DIR:=/root/Megatron-LM}"
: "${MASTER_ADDR:=127.0.0.1}"
# RECIPE_RAY_ADDRESS: join an existing cluster (multi-node); otherwise a head is started here.
: "${RECIPE_RAY_ADDRESS:=}"
# RECIPE_WANDB_PROJECT turns on wandb; its key is read from WANDB_API_KEY by wandb itself.
: "${RECIPE_WANDB_PROJECT:=}" "${RECIPE_WANDB_GROUP:=$RECIPE_RUN_ID}"

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
