"""NemotronH's memory model for a colocated GRPO recipe, and its calibration.

Every GPU alternates two phases:

  train phase   = bf16 weights + fp32 grads + Adam state shard + activations + runtime
                  + what the paused rollout engine keeps (its weights and KV cache are released)
  rollout phase = the engine's static pool (mem_fraction_static x card) + engine runtime
                  + what the offloaded trainer keeps on the GPU

The peak is the larger phase (the weight update in between, trainer asleep and the engine's
weights back, stays below both). Parameters per rank are counted from config.json for the
heaviest pipeline stage (shape.py). The constants below are calibrated against what is known of
the 30B recipe on H200 (miles v0.1.0 recipe): the six verified cells fit in 141 GB, a TP4 x EP2
layout exceeded 140 GB per GPU, one SGLang engine holds about 59 GB of weights. They are
per-process overheads, not per-card: an H100 uses the same constants with its own capacity
(runner/model/memory.py GPU_MEMORY_BYTES).
"""

from __future__ import annotations

from runner.layout import Layout
from runner.model.memory import MemoryEstimate, MemorySettings, gib

from .shape import ModelShape

# Calibrated constants (GiB): the trainer's CUDA context (0.5 GiB measured per process), NCCL
# communicators and workspaces, plus caching-allocator slack in proportion to what it holds; what
# SGLang keeps while paused (context; miles releases its weights, KV cache and CUDA graphs); SGLang's
# memory outside its static pool during rollout; what the offloaded trainer keeps.
TRAIN_RUNTIME_GIB = 3.0
ALLOCATOR_SLACK = 0.05
ENGINE_PAUSED_GIB = 2.0
ENGINE_RUNTIME_GIB = 5.0
TRAIN_OFFLOADED_GIB = 2.0
CALIBRATION = (
    "calibration: H200 usable memory 139.8 GiB (torch total_memory, measured); trainer runtime "
    f"{TRAIN_RUNTIME_GIB:g} GiB + {ALLOCATOR_SLACK:.0%} allocator slack, paused SGLang {ENGINE_PAUSED_GIB:g} GiB, "
    f"SGLang runtime {ENGINE_RUNTIME_GIB:g} GiB, offloaded trainer {TRAIN_OFFLOADED_GIB:g} GiB; set so that "
    "the six verified 8xH200 cells fit (largest predicted 109 GiB) and TP4xEP2 ETP1, seen to exceed "
    "140 GB/GPU, does not (its weights+grads+Adam alone are 129 GiB); SGLang weights = parameters x 2 B "
    "/ GPUs per engine = 58.8 GiB (about 59 GB seen upstream); H100: the same constants, 79.1 GiB usable "
    "(nvidia-smi's size less the H200's driver reserve, not measured)"
)


def activation_bytes(shape: ModelShape, lay: Layout, stage: int, s: MemorySettings) -> float:
    """Full recompute, one layer per checkpoint: each layer keeps only its input (sharded over TP
    by sequence parallel), one layer at a time is recomputed, the last stage holds the logits.
    1F1B keeps up to PP - stage micro-batches in flight on a stage."""
    t = s.max_tokens_per_gpu  # tokens of one micro-batch on one CP rank
    t_seq = t // lay.tp if lay.sp else t
    layers = shape.stage_patterns(lay.pp)[stage]
    inflight = lay.pp - stage
    h = shape.hidden
    if s.full_recompute:
        stored = len(layers) * t_seq * h * 2 * inflight
    else:  # rough: ~16 bf16 values of hidden size per token and layer
        stored = len(layers) * t_seq * h * 2 * 16 * inflight
    d_inner = shape.mamba_heads * shape.mamba_head_dim
    work = {
        "M": t * (2 * d_inner + 2 * shape.mamba_groups * shape.ssm_state + shape.mamba_heads) // lay.tp * 2 * 3,
        "*": t * shape.head_dim * (2 * shape.heads + 2 * shape.kv_heads) // lay.tp * 2 * 3,
        "E": t * shape.topk * (h + 2 * shape.moe_ffn // lay.etp) * 2 * 3,
        "-": t * 2 * shape.ffn // lay.tp * 2 * 3,
    }
    recompute = max(work[c] for c in set(layers))
    logits = t * shape.padded_vocab(lay.tp, s.vocab_divisible_by) // lay.tp * 4 * 3 if stage == lay.pp - 1 else 0
    return stored + recompute + logits


def estimate_memory(shape: ModelShape, lay: Layout, world: int, s: MemorySettings,
                    capacity_bytes: int) -> MemoryEstimate:
    dp_dense = world // (lay.tp * lay.pp)  # distributed optimizer shards over DP x CP
    dp_expert = world // (lay.pp * lay.ep * lay.etp)
    cap = gib(capacity_bytes)
    best: MemoryEstimate | None = None
    for stage in range(lay.pp):
        dense, expert = shape.stage_params(stage, lay.pp, lay.tp, lay.ep, lay.etp, s.vocab_divisible_by)
        weights = gib(2 * (dense + expert))
        grads = gib((4 if s.fp32_grads else 2) * (dense + expert))
        if s.optimizer_on_cpu:
            optim = 0.0
        elif s.distributed_optimizer:  # fp32 main params + Adam m and v, sharded
            optim = gib(12 * dense / dp_dense + 12 * expert / dp_expert)
        else:
            optim = gib(12 * (dense + expert))
        act = gib(activation_bytes(shape, lay, stage, s))
        engine_weights = gib(2 * shape.total_params() / s.gpus_per_engine)
        rollout_static = s.rollout_mem_fraction * cap if s.colocate else 0.0
        paused = ENGINE_PAUSED_GIB if s.colocate else 0.0
        if s.colocate and not s.offload_rollout_weights:
            paused += engine_weights
        if s.colocate and not s.offload_rollout_kv:
            paused += max(rollout_static - engine_weights, 0.0)
        runtime = TRAIN_RUNTIME_GIB + ALLOCATOR_SLACK * (weights + grads + optim + act)
        train_phase = weights + grads + optim + act + runtime + paused
        offloaded = TRAIN_OFFLOADED_GIB if s.offload_train else weights + grads + optim + runtime
        rollout_phase = rollout_static + ENGINE_RUNTIME_GIB + offloaded if s.colocate else 0.0
        est = MemoryEstimate(
            stage=stage, params_dense=dense, params_expert=expert, weights=weights, grads=grads,
            optimizer=optim, activations=act, train_runtime=runtime, rollout_paused=paused,
            train_phase=train_phase, rollout_static=rollout_static,
            rollout_runtime=ENGINE_RUNTIME_GIB if s.colocate else 0.0, train_offloaded=offloaded,
            rollout_phase=rollout_phase, peak=max(train_phase, rollout_phase), capacity=cap)
        if best is None or (est.peak, est.train_phase) > (best.peak, best.train_phase):
            best = est
    assert best is not None
    return best
