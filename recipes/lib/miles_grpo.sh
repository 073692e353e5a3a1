# shellcheck shell=bash
# The miles GRPO argument blocks every miles recipe of the bundle shares, in the order of upstream's
# launcher (scripts/run_nemotron_3_nano.py, miles 78527b91): model, ckpt, rollout, optimizer, grpo,
# (wandb), perf, sglang, misc. A recipe's run.sh sets only what differs, as that launcher's
# `_Recipe` table does, then calls miles_grpo_launch; the RECIPE_* values come from `recipe run`:
#   GRPO_N_SAMPLES_PER_PROMPT  GRPO_ROLLOUT_MAX_RESPONSE_LEN  GRPO_GLOBAL_BATCH_SIZE
#   GRPO_RECOMPUTE (0/1)       GRPO_LOG_PROBS_CHUNK_SIZE (empty: no chunking)
#   GRPO_SGLANG_EXTRA (array: e.g. --use-rollout-routing-replay)
# Sourced after launch.sh.

miles_grpo_launch() {
  local here=$1
  # The values recipe.toml states: `recipe run` passes them, and nothing re-defaults them here. By
  # hand, set them (`recipe plan NAME` prints them).
  recipe_require RECIPE_MODEL_DIR RECIPE_DATA_DIR RECIPE_OUTPUT_DIR RECIPE_RUN_DIR RECIPE_RUN_ID \
    RECIPE_TP RECIPE_PP RECIPE_CP RECIPE_EP RECIPE_ETP RECIPE_SP RECIPE_MAX_TOKENS_PER_GPU \
    RECIPE_NODES RECIPE_GPUS_PER_NODE RECIPE_NUM_ROLLOUT RECIPE_SEED RECIPE_ROLLOUT_SEED RECIPE_DETERMINISTIC \
    RECIPE_FORWARD_ENV
  # Where the image has miles and Megatron, and the optional cluster and wandb settings.
  : "${RECIPE_MILES_DIR:=/root/miles}" "${RECIPE_MEGATRON_DIR:=/root/Megatron-LM}"
  : "${MASTER_ADDR:=127.0.0.1}"
  # RECIPE_RAY_ADDRESS: join an existing cluster (multi-node); otherwise a head is started here.
  : "${RECIPE_RAY_ADDRESS:=}"
  # RECIPE_WANDB_PROJECT turns on wandb; its key is read from WANDB_API_KEY by wandb itself.
  : "${RECIPE_WANDB_PROJECT:=}" "${RECIPE_WANDB_GROUP:=$RECIPE_RUN_ID}"
  recipe_require_int RECIPE_TP RECIPE_PP RECIPE_CP RECIPE_EP RECIPE_ETP RECIPE_MAX_TOKENS_PER_GPU RECIPE_NODES \
    RECIPE_GPUS_PER_NODE RECIPE_NUM_ROLLOUT RECIPE_SEED RECIPE_ROLLOUT_SEED \
    GRPO_N_SAMPLES_PER_PROMPT GRPO_ROLLOUT_MAX_RESPONSE_LEN GRPO_GLOBAL_BATCH_SIZE
  local total_gpus=$((RECIPE_NODES * RECIPE_GPUS_PER_NODE))
  local -a MODEL_ARGS CKPT_ARGS ROLLOUT_ARGS OPTIMIZER_ARGS GRPO_ARGS WANDB_ARGS PERF_ARGS SGLANG_ARGS \
    MISC_ARGS DETERMINISM_ARGS
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
    --n-samples-per-prompt "$GRPO_N_SAMPLES_PER_PROMPT"
    --rollout-max-response-len "$GRPO_ROLLOUT_MAX_RESPONSE_LEN"
    --rollout-temperature 1
    --global-batch-size "$GRPO_GLOBAL_BATCH_SIZE"
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
  )
  if [[ "$GRPO_RECOMPUTE" == 1 ]]; then
    PERF_ARGS+=(--recompute-granularity full --recompute-method uniform --recompute-num-layers 1)
  fi
  PERF_ARGS+=(--use-dynamic-batch-size --max-tokens-per-gpu "$RECIPE_MAX_TOKENS_PER_GPU")
  if [[ -n "${GRPO_LOG_PROBS_CHUNK_SIZE:-}" ]]; then
    recipe_require_int GRPO_LOG_PROBS_CHUNK_SIZE
    PERF_ARGS+=(--log-probs-chunk-size "$GRPO_LOG_PROBS_CHUNK_SIZE")
  fi

  SGLANG_ARGS=(--rollout-num-gpus-per-engine 1 --sglang-mem-fraction-static 0.7 "${GRPO_SGLANG_EXTRA[@]}")

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
    # The bundle's own flags (not in upstream's launcher): explicit seeds, and every metric as JSON
    # lines with no tracking backend needed.
    --seed "$RECIPE_SEED"
    --rollout-seed "$RECIPE_ROLLOUT_SEED"
    --save-debug-event-data "$RECIPE_RUN_DIR/events"
  )

  DETERMINISM_ARGS=()
  if [[ "$RECIPE_DETERMINISTIC" == 1 ]]; then
    DETERMINISM_ARGS=(--deterministic-mode --sglang-enable-deterministic-inference)
    export NCCL_ALGO=Ring NVTE_ALLOW_NONDETERMINISTIC_ALGO=0 CUBLAS_WORKSPACE_CONFIG=:4096:8
  fi

  # ---- job environment --------------------------------------------------------------------
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
  local -a job_env=(PYTHONPATH CUDA_DEVICE_MAX_CONNECTIONS NCCL_NVLS_ENABLE MASTER_ADDR PYTHONUNBUFFERED no_proxy)
  # The network interfaces and NCCL's debug output, when set: the runner's list (FORWARDED_ENV in
  # runner/plan/options.py), the same the docker backend passes into its container.
  local -a forward
  read -r -a forward <<<"$RECIPE_FORWARD_ENV"
  recipe_forward_set job_env "${forward[@]}"
  if [[ "$RECIPE_DETERMINISTIC" == 1 ]]; then
    job_env+=(NCCL_ALGO NVTE_ALLOW_NONDETERMINISTIC_ALGO CUBLAS_WORKSPACE_CONFIG)
  fi
  local runtime_env
  runtime_env=$(recipe_runtime_env_json "${job_env[@]}")

  # ---- launch -----------------------------------------------------------------------------
  recipe_cmd mkdir -p "$RECIPE_RUN_DIR/events" "$RECIPE_OUTPUT_DIR/checkpoints"
  recipe_launch_job "$RECIPE_GPUS_PER_NODE" "$total_gpus" "$runtime_env" -- \
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
}
