#!/usr/bin/env bash
# nemotron3_nano_tiny, cell cpu: the launch as the runner renders it (runner/frameworks/),
# as one script; `recipe plan nemotron3_nano_tiny` shows it. Generated: do not edit.
# The frozen rendering of the default cell: `recipe lock NAME --recipe-files` rewrites it, and
# its --check and tests/test_run_script.py hold it to what the runner renders.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib/launch.sh"

# Run by hand inside the image: set RECIPE_INPUTS_DIR (the inputs root, `recipe fetch NAME --inputs DIR`);
# RECIPE_RUN_DIR (default ./runs/<run id>) and RECIPE_OUTPUT_DIR (default RUN_DIR/output) are optional.
: "${RECIPE_INPUTS_DIR:?set RECIPE_INPUTS_DIR to the inputs root (recipe fetch NAME --inputs DIR)}"
: "${RECIPE_RUN_ID:=manual-$(date -u +%Y%m%dT%H%M%SZ)}"
: "${RECIPE_RUN_DIR:=$PWD/runs/$RECIPE_RUN_ID}"
: "${RECIPE_OUTPUT_DIR:=$RECIPE_RUN_DIR/output}"

# ---- the run: what the Ray lifecycle (recipes/lib/launch.sh) reads ----------------------------
export RECIPE_NAME=nemotron3_nano_tiny
export RECIPE_CELL=cpu
export RECIPE_MODEL_DIR="${RECIPE_INPUTS_DIR}"/model
export RECIPE_DATA_DIR="${RECIPE_INPUTS_DIR}"/data
export RECIPE_NODES=1
export RECIPE_GPUS_PER_NODE=0
export RECIPE_NUM_ROLLOUT=10
export RECIPE_SEED=1234
export RECIPE_ROLLOUT_SEED=42
export RECIPE_DETERMINISTIC=0
export RECIPE_TP=1
export RECIPE_PP=1
export RECIPE_CP=1
export RECIPE_EP=1
export RECIPE_ETP=1
export RECIPE_SP=0
export RECIPE_MAX_TOKENS_PER_GPU=512
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0

# ---- job environment: what Ray gives the trainer ----------------------------------------------
export PYTHONUNBUFFERED=1
export MASTER_ADDR=127.0.0.1
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export HF_DATASETS_CACHE="${RECIPE_OUTPUT_DIR}"/datasets_cache
export no_proxy=127.0.0.1,localhost,127.0.0.1
job_env=(PYTHONUNBUFFERED MASTER_ADDR OMP_NUM_THREADS MKL_NUM_THREADS TOKENIZERS_PARALLELISM HF_HUB_OFFLINE HF_DATASETS_OFFLINE HF_DATASETS_CACHE no_proxy)

# ---- argument blocks --------------------------------------------------------------------------
MODEL_ARGS=(
  --disable-bias-linear
  --group-query-attention
  --num-attention-heads 4
  --num-query-groups 2
  --kv-channels 32
  --num-layers 9
  --hidden-size 128
  --ffn-hidden-size 256
  --normalization RMSNorm
  --position-embedding-type none
  --vocab-size 18
  --make-vocab-size-divisible-by 2
  --untie-embeddings-and-output-weights
  --num-experts 16
  --moe-router-topk 4
  --moe-ffn-hidden-size 64
  --moe-shared-expert-intermediate-size 128
  --moe-router-score-function sigmoid
  --moe-router-enable-expert-bias
  --moe-grouped-gemm
  --moe-router-dtype fp32
  --moe-router-num-groups 1
  --moe-router-group-topk 1
  --moe-router-topk-scaling-factor 2.5
  --moe-router-pre-softmax
  --moe-router-load-balancing-type seq_aux_loss
  --moe-router-bias-update-rate 0
  --moe-aux-loss-coeff 0
)
CKPT_ARGS=(
  --hf-checkpoint "${RECIPE_INPUTS_DIR}"/model
  --save "${RECIPE_OUTPUT_DIR}"/trainer
  --save-interval 2
)
ROLLOUT_ARGS=(
  --prompt-data "${RECIPE_INPUTS_DIR}"/data/arithmetic.jsonl
  --input-key prompt
  --label-key label
  --num-rollout 10
  --rollout-batch-size 16
  --n-samples-per-prompt 4
  --rollout-max-response-len 4
  --rollout-temperature 1
  --global-batch-size 64
)
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
ROUTING_ARGS=(
  --use-rollout-routing-replay
)
MISC_ARGS=(
  --seed 1234
  --rollout-seed 42
  --num-threads 1
  --save-debug-event-data "${RECIPE_RUN_DIR}"/events
)

# ---- launch -----------------------------------------------------------------------------------
recipe_cmd mkdir -p "${RECIPE_RUN_DIR}"/events "${RECIPE_OUTPUT_DIR}"/trainer
recipe_launch_job 0 0 "$(recipe_runtime_env_json "${job_env[@]}")" -- \
  python3 "${here}"/train_grpo.py \
  "${MODEL_ARGS[@]}" \
  "${CKPT_ARGS[@]}" \
  "${ROLLOUT_ARGS[@]}" \
  "${OPTIMIZER_ARGS[@]}" \
  "${GRPO_ARGS[@]}" \
  "${ROUTING_ARGS[@]}" \
  "${MISC_ARGS[@]}"
