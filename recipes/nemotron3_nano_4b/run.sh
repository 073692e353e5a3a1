#!/usr/bin/env bash
# nemotron3_nano_4b: GRPO of the dense Nemotron-3-Nano-4B-BF16 with miles, run on the head node inside
# the pinned image. `recipe run` sets the RECIPE_* variables below; by hand, the defaults are the
# recipe's default cell on 1 node x 8 H100 or H200. RECIPE_DRY_RUN=1 prints each command instead.
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

# ---- inputs -------------------------------------------------------------------------------
: "${RECIPE_INPUTS_DIR:=/root/miles_data/nemotron3_nano}"
: "${RECIPE_MODEL_DIR:=$RECIPE_INPUTS_DIR/model}"
: "${RECIPE_DATA_DIR:=$RECIPE_INPUTS_DIR/data}"
: "${RECIPE_OUTPUT_DIR:=/root/miles_data/nemotron3_nano_4b_output}"
: "${RECIPE_RUN_DIR:=$RECIPE_OUTPUT_DIR/run}"
: "${RECIPE_RUN_ID:=nemotron3_nano_4b-$$}"
# parallelism cell (default: TP2 PP2 CP1 EP1 ETP1 + SP; dense, so EP/ETP stay 1)
: "${RECIPE_TP:=2}" "${RECIPE_PP:=2}" "${RECIPE_CP:=1}" "${RECIPE_EP:=1}" "${RECIPE_ETP:=1}"
: "${RECIPE_SP:=1}" "${RECIPE_MAX_TOKENS_PER_GPU:=9216}"
: "${RECIPE_NODES:=1}" "${RECIPE_GPUS_PER_NODE:=8}"
: "${RECIPE_NUM_ROLLOUT:=10}" "${RECIPE_SEED:=1234}" "${RECIPE_ROLLOUT_SEED:=42}"
: "${RECIPE_DETERMINISTIC:=0}"
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
