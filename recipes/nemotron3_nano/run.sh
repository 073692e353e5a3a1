#!/usr/bin/env bash
# nemotron3_nano: GRPO of Nemotron-3-Nano-30B-A3B-BF16 with miles, run on the head node inside
# the pinned image. `recipe run` sets the RECIPE_* variables below; by hand, the defaults are the
# recipe's default cell on 1 node x 8 H200. RECIPE_DRY_RUN=1 prints each command instead.
#
# Order of the argument blocks follows the upstream launch script: model, ckpt, rollout,
# optimizer, grpo, (wandb), perf, sglang, misc. Model flags come verbatim from model_args.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/launch.sh
source "$here/../lib/launch.sh"

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

total_gpus=$((RECIPE_NODES * RECIPE_GPUS_PER_NODE))

# ---- argument blocks ----------------------------------------------------------------------
recipe_read_args_file "$here/model_args.txt" MODEL_ARGS

CKPT_ARGS=(
  --hf-checkpoint "$RECIPE_MODEL_DIR"
  --ref-load "$RECIPE_MODEL_DIR"
  --save "$RECIPE_OUTPUT_DIR/checkpoints"
  --save-interval 20
  --megatron-to-hf-mode bridge
)

ROLLOUT_ARGS=(
  --prompt-data "$RECIPE_DATA_DIR/dapo-math-17k.jsonl"
  --input-key prompt
  --label-key label
  --apply-chat-template
  --rollout-shuffle
  --rm-type deepscaler
  --num-rollout "$RECIPE_NUM_ROLLOUT"
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

WANDB_ARGS=()
if [[ -n "$RECIPE_WANDB_PROJECT" ]]; then
  WANDB_ARGS=(--use-wandb --wandb-project "$RECIPE_WANDB_PROJECT" --wandb-group "$RECIPE_WANDB_GROUP")
fi

PERF_ARGS=(--tensor-model-parallel-size "$RECIPE_TP")
if [[ "$RECIPE_SP" == 1 ]]; then PERF_ARGS+=(--sequence-parallel); fi
PERF_ARGS+=(
  --pipeline-model-parallel-size "$RECIPE_PP"
  --context-parallel-size "$RECIPE_CP"
  --expert-model-parallel-size "$RECIPE_EP"
  --expert-tensor-parallel-size "$RECIPE_ETP"
  --recompute-granularity full
  --recompute-method uniform
  --recompute-num-layers 1
  --use-dynamic-batch-size
  --max-tokens-per-gpu "$RECIPE_MAX_TOKENS_PER_GPU"
  --log-probs-chunk-size 128
)

SGLANG_ARGS=(
  --rollout-num-gpus-per-engine 1
  --sglang-mem-fraction-static 0.7
  # miles' own Python HTTP router (MilesRouter) in front of the SGLang engines instead of the Rust
  # sgl-router (miles/ray/rollout/router_manager.py, miles 78527b91). It is NOT routing replay. Kept
  # because the seed recipe passes it; upstream's launcher at that commit no longer does
  # (scripts/run_nemotron_3_nano.py). `recipe lint` notes it.
  --use-miles-router
  # Rollout routing replay (R3): training replays the experts SGLang chose, so train and rollout
  # log-probs stay aligned for the sigmoid-routed MoE.
  --use-rollout-routing-replay
)

MISC_ARGS=(
  --attention-dropout 0.0
  --hidden-dropout 0.0
  --accumulate-allreduce-grads-in-fp32
  --attention-softmax-in-fp32
  --attention-backend auto
  --colocate
  # Node and GPU counts come from the launch, never silently from $SLURM_JOB_NUM_NODES.
  --actor-num-nodes "$RECIPE_NODES"
  --actor-num-gpus-per-node "$RECIPE_GPUS_PER_NODE"
  --num-gpus-per-node "$RECIPE_GPUS_PER_NODE"
  --rollout-num-gpus "$total_gpus"
  --seed "$RECIPE_SEED"
  --rollout-seed "$RECIPE_ROLLOUT_SEED"
  # Every metric as JSON lines, with no tracking backend needed.
  --save-debug-event-data "$RECIPE_RUN_DIR/events"
)

DETERMINISM_ARGS=()
if [[ "$RECIPE_DETERMINISTIC" == 1 ]]; then
  DETERMINISM_ARGS=(--deterministic-mode --sglang-enable-deterministic-inference)
  export NCCL_ALGO=Ring NVTE_ALLOW_NONDETERMINISTIC_ALGO=0 CUBLAS_WORKSPACE_CONFIG=:4096:8
fi

# ---- job environment ----------------------------------------------------------------------
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1 MASTER_ADDR
if [[ -z "${NCCL_NVLS_ENABLE:-}" ]]; then
  if (($(recipe_nvlink_count) > 0)); then NCCL_NVLS_ENABLE=1; else NCCL_NVLS_ENABLE=0; fi
fi
export NCCL_NVLS_ENABLE
# miles and Megatron first, then whatever PYTHONPATH the caller (or the image) already had, as
# upstream's launcher builds it (miles/utils/external_utils/command_utils.py, miles 78527b91).
PYTHONPATH=$(recipe_pythonpath "$RECIPE_MILES_DIR" "$RECIPE_MEGATRON_DIR")
export PYTHONPATH
export no_proxy="127.0.0.1,localhost,$MASTER_ADDR"
job_env=(PYTHONPATH CUDA_DEVICE_MAX_CONNECTIONS NCCL_NVLS_ENABLE MASTER_ADDR PYTHONUNBUFFERED no_proxy)
# The network interfaces and NCCL's debug output, when set: on two nodes a wrong interface hangs.
recipe_forward_set job_env NCCL_SOCKET_IFNAME GLOO_SOCKET_IFNAME NCCL_DEBUG NCCL_DEBUG_FILE
if [[ "$RECIPE_DETERMINISTIC" == 1 ]]; then
  job_env+=(NCCL_ALGO NVTE_ALLOW_NONDETERMINISTIC_ALGO CUBLAS_WORKSPACE_CONFIG)
fi
runtime_env=$(recipe_runtime_env_json "${job_env[@]}")

# ---- launch -------------------------------------------------------------------------------
recipe_ray_defaults
recipe_cmd mkdir -p "$RECIPE_RUN_DIR/events" "$RECIPE_OUTPUT_DIR/checkpoints"
trap recipe_cleanup EXIT
trap 'exit 130' INT TERM

ray_address=$RECIPE_RAY_ADDRESS
if [[ -z "$ray_address" ]]; then
  recipe_ray_start head "$MASTER_ADDR" "$RECIPE_GPUS_PER_NODE"
  ray_address="$MASTER_ADDR:$RECIPE_RAY_PORT"
fi
recipe_ray_wait "$ray_address" "$RECIPE_NODES" "$total_gpus"

recipe_ray_job "http://127.0.0.1:$RECIPE_RAY_DASHBOARD_PORT" "$RECIPE_RUN_ID" "$runtime_env" -- \
  python3 "$RECIPE_MILES_DIR/train.py" \
  "${MODEL_ARGS[@]}" \
  "${CKPT_ARGS[@]}" \
  "${ROLLOUT_ARGS[@]}" \
  "${OPTIMIZER_ARGS[@]}" \
  "${GRPO_ARGS[@]}" \
  "${WANDB_ARGS[@]}" \
  "${PERF_ARGS[@]}" \
  "${SGLANG_ARGS[@]}" \
  "${MISC_ARGS[@]}" \
  "${DETERMINISM_ARGS[@]}"
