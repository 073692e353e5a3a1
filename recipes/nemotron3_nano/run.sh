#!/usr/bin/env bash
# nemotron3_nano, cell default: the launch as the runner renders it (runner/frameworks/),
# as one script; `recipe plan nemotron3_nano` shows it. Generated: do not edit.
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
export RECIPE_NAME=nemotron3_nano
export RECIPE_CELL=default
export RECIPE_MODEL_DIR="${RECIPE_INPUTS_DIR}"/model
export RECIPE_DATA_DIR="${RECIPE_INPUTS_DIR}"/data
export RECIPE_NODES=1
export RECIPE_GPUS_PER_NODE=8
export RECIPE_NUM_ROLLOUT=10
export RECIPE_SEED=1234
export RECIPE_ROLLOUT_SEED=42
export RECIPE_DETERMINISTIC=0
export RECIPE_TP=2
export RECIPE_PP=2
export RECIPE_CP=1
export RECIPE_EP=2
export RECIPE_ETP=1
export RECIPE_SP=1
export RECIPE_MAX_TOKENS_PER_GPU=1024

# ---- job environment: what Ray gives the trainer ----------------------------------------------
export PYTHONPATH=/root/miles:/root/Megatron-LM
export CUDA_DEVICE_MAX_CONNECTIONS=1
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-$(recipe_nvls_default)}"
export MASTER_ADDR=127.0.0.1
export PYTHONUNBUFFERED=1
export no_proxy=127.0.0.1,localhost,127.0.0.1
export RAY_DEDUP_LOGS=0
job_env=(PYTHONPATH CUDA_DEVICE_MAX_CONNECTIONS NCCL_NVLS_ENABLE MASTER_ADDR PYTHONUNBUFFERED no_proxy RAY_DEDUP_LOGS)

# ---- argument blocks --------------------------------------------------------------------------
MODEL_ARGS=(
  --disable-bias-linear
  --group-query-attention
  --num-attention-heads 32
  --num-query-groups 2
  --kv-channels 128
  --num-layers 52
  --hidden-size 2688
  --ffn-hidden-size 1856
  --normalization RMSNorm
  --position-embedding-type none
  --vocab-size 131072
  --make-vocab-size-divisible-by 128
  --untie-embeddings-and-output-weights
  --num-experts 128
  --moe-router-topk 6
  --moe-ffn-hidden-size 1856
  --moe-shared-expert-intermediate-size 3712
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
  --ref-load "${RECIPE_INPUTS_DIR}"/model
  --save "${RECIPE_OUTPUT_DIR}"/checkpoints
  --save-interval 20
  --megatron-to-hf-mode bridge
)
ROLLOUT_ARGS=(
  --prompt-data "${RECIPE_INPUTS_DIR}"/data/dapo-math-17k.jsonl
  --input-key prompt
  --label-key label
  --apply-chat-template
  --rollout-shuffle
  --rm-type deepscaler
  --num-rollout 10
  --rollout-batch-size 32
  --n-samples-per-prompt 4
  --rollout-max-response-len 1024
  --rollout-temperature 1
  --global-batch-size 128
  --balance-data
)
OPTIMIZER_ARGS=(
  --optimizer adam
  --lr 1e-6
  --lr-decay-style constant
  --weight-decay 0.1
  --adam-beta1 0.9
  --adam-beta2 0.98
)
GRPO_ARGS=(
  --advantage-estimator grpo
  --use-kl-loss
  --kl-loss-coef 0.00
  --kl-loss-type low_var_kl
  --entropy-coef 0.00
  --eps-clip 0.2
  --eps-clip-high 0.28
)
PERF_ARGS=(
  --tensor-model-parallel-size 2
  --sequence-parallel
  --pipeline-model-parallel-size 2
  --context-parallel-size 1
  --expert-model-parallel-size 2
  --expert-tensor-parallel-size 1
  --recompute-granularity full
  --recompute-method uniform
  --recompute-num-layers 1
  --use-dynamic-batch-size
  --max-tokens-per-gpu 1024
  --log-probs-chunk-size 128
)
SGLANG_ARGS=(
  --rollout-num-gpus-per-engine 1
  --sglang-mem-fraction-static 0.7
  --use-miles-router
  --use-rollout-routing-replay
)
MISC_ARGS=(
  --attention-dropout 0.0
  --hidden-dropout 0.0
  --accumulate-allreduce-grads-in-fp32
  --attention-softmax-in-fp32
  --attention-backend auto
  --colocate
  --actor-num-nodes 1
  --actor-num-gpus-per-node 8
  --num-gpus-per-node 8
  --rollout-num-gpus 8
  --seed 1234
  --rollout-seed 42
)

# ---- launch -----------------------------------------------------------------------------------
recipe_cmd mkdir -p "${RECIPE_OUTPUT_DIR}"/checkpoints
recipe_launch_job 8 8 "$(recipe_runtime_env_json "${job_env[@]}")" -- \
  python3 /root/miles/train.py \
  "${MODEL_ARGS[@]}" \
  "${CKPT_ARGS[@]}" \
  "${ROLLOUT_ARGS[@]}" \
  "${OPTIMIZER_ARGS[@]}" \
  "${GRPO_ARGS[@]}" \
  "${PERF_ARGS[@]}" \
  "${SGLANG_ARGS[@]}" \
  "${MISC_ARGS[@]}"
