#!/usr/bin/env bash
# nemotron3_nano_tiny: the CPU smoke of nemotron3_nano. The same architecture at toy size (NemotronH
# with Mamba2, attention without RoPE and sigmoid-routed MoE, router scale 2.5), trained with the same
# GRPO constants through the same stages: Ray head, readiness wait, `ray job submit`, metric events.
# `recipe run` sets the RECIPE_* variables below; by hand the defaults use the committed inputs/.
# RECIPE_DRY_RUN=1 prints each command instead.
#
# Argument blocks follow recipes/nemotron3_nano/run.sh (model, ckpt, rollout, optimizer, grpo, misc);
# model flags come verbatim from model_args.txt and are checked against the HF config at start.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/launch.sh
source "$here/../lib/launch.sh"

# ---- values recipe.toml states (`recipe run` passes them; nothing is re-defaulted here) ----
# The one cell is a single CPU process (the parallelism variables are read for the shared contract).
recipe_require RECIPE_MODEL_DIR RECIPE_DATA_DIR RECIPE_OUTPUT_DIR RECIPE_RUN_DIR RECIPE_RUN_ID \
  RECIPE_TP RECIPE_PP RECIPE_CP RECIPE_EP RECIPE_ETP RECIPE_SP RECIPE_MAX_TOKENS_PER_GPU \
  RECIPE_NODES RECIPE_GPUS_PER_NODE RECIPE_NUM_ROLLOUT RECIPE_SEED RECIPE_ROLLOUT_SEED RECIPE_DETERMINISTIC
# Torch's deterministic algorithms only when asked (recipe.toml [run] deterministic = false): with one
# torch thread the run reproduces bit for bit either way (measured: identical values with and without).
: "${RECIPE_PYTHON:=python3}"
: "${RECIPE_TORCH_THREADS:=1}"
: "${MASTER_ADDR:=127.0.0.1}"
# RECIPE_RAY_ADDRESS: join an existing cluster (multi-node); otherwise a head is started here.
: "${RECIPE_RAY_ADDRESS:=}"

recipe_require_int RECIPE_TP RECIPE_PP RECIPE_CP RECIPE_EP RECIPE_ETP RECIPE_MAX_TOKENS_PER_GPU RECIPE_NODES \
  RECIPE_GPUS_PER_NODE RECIPE_NUM_ROLLOUT RECIPE_SEED RECIPE_ROLLOUT_SEED RECIPE_TORCH_THREADS
if ((RECIPE_TP * RECIPE_PP * RECIPE_CP * RECIPE_EP * RECIPE_ETP != 1)); then
  recipe_die 2 "nemotron3_nano_tiny runs in one CPU process: RECIPE_TP/PP/CP/EP/ETP must all be 1"
fi

# ---- argument blocks ----------------------------------------------------------------------
recipe_read_args_file "$here/model_args.txt" MODEL_ARGS

CKPT_ARGS=(
  --hf-checkpoint "$RECIPE_MODEL_DIR"
  --save "$RECIPE_OUTPUT_DIR/trainer"
)

# 16 prompts x 4 samples = 64 = the global batch: one optimizer step per rollout, as in the 30B
# recipe (32 x 4 / 128). Answers are at most 3 characters, so 4 tokens leave room for the EOS.
ROLLOUT_ARGS=(
  --prompt-data "$RECIPE_DATA_DIR/arithmetic.jsonl"
  --input-key prompt
  --label-key label
  --num-rollout "$RECIPE_NUM_ROLLOUT"
  --rollout-batch-size 16
  --n-samples-per-prompt 4
  --rollout-max-response-len 4
  --rollout-temperature 1
  --global-batch-size 64
)

# The 30B's optimizer, except the step size: 1e-6 moves a randomly initialised toy model by
# nothing measurable in 10 steps; 1e-3 makes the update visible (entropy falls), which the gate checks.
OPTIMIZER_ARGS=(
  --lr 1e-3
  --weight-decay 0.1
  --adam-beta1 0.9
  --adam-beta2 0.98
)

GRPO_ARGS=(
  --kl-loss-coef 0.00
  --eps-clip 0.2
  --eps-clip-high 0.28
)

# Rollout routing replay keeps train and rollout log-probs aligned for the sigmoid-routed MoE, as
# --use-rollout-routing-replay does in the 30B run (here the rollout engine is HF generate).
ROUTING_ARGS=(
  --use-rollout-routing-replay
)

MISC_ARGS=(
  --seed "$RECIPE_SEED"
  --rollout-seed "$RECIPE_ROLLOUT_SEED"
  --num-threads "$RECIPE_TORCH_THREADS"
  # Every metric as JSON lines, in miles' event format.
  --save-debug-event-data "$RECIPE_RUN_DIR/events"
)

DETERMINISM_ARGS=()
if [[ "$RECIPE_DETERMINISTIC" == 1 ]]; then
  DETERMINISM_ARGS=(--deterministic-mode)
fi

# ---- job environment ----------------------------------------------------------------------
# One intra-op thread: CPU reductions then run in one fixed order, so reruns agree bit for bit.
export PYTHONUNBUFFERED=1 MASTER_ADDR
export OMP_NUM_THREADS="$RECIPE_TORCH_THREADS" MKL_NUM_THREADS="$RECIPE_TORCH_THREADS"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_DATASETS_CACHE="$RECIPE_OUTPUT_DIR/datasets_cache"
export no_proxy="127.0.0.1,localhost,$MASTER_ADDR"
job_env=(PYTHONUNBUFFERED MASTER_ADDR OMP_NUM_THREADS MKL_NUM_THREADS TOKENIZERS_PARALLELISM
  HF_HUB_OFFLINE HF_DATASETS_OFFLINE HF_DATASETS_CACHE no_proxy)
runtime_env=$(recipe_runtime_env_json "${job_env[@]}")
# Ray >= 2.5x drains a SIGTERMed node for up to 30 s; nothing of ours needs draining once the job ended.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"

# ---- launch -------------------------------------------------------------------------------
recipe_cmd mkdir -p "$RECIPE_RUN_DIR/events" "$RECIPE_OUTPUT_DIR/trainer"
recipe_launch_job 0 0 "$runtime_env" -- \
  "$RECIPE_PYTHON" "$here/train_grpo.py" \
  "${MODEL_ARGS[@]}" \
  "${CKPT_ARGS[@]}" \
  "${ROLLOUT_ARGS[@]}" \
  "${OPTIMIZER_ARGS[@]}" \
  "${GRPO_ARGS[@]}" \
  "${ROUTING_ARGS[@]}" \
  "${MISC_ARGS[@]}" \
  "${DETERMINISM_ARGS[@]}"
