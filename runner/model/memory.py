"""Which parallel layouts of a recipe are legal on N GPUs, and whether each fits in GPU memory.

Legality is Megatron's divisibility rules (runner/model/parallel.py). Memory is a per-GPU model of the
colocated miles recipe, which alternates two phases on every GPU:

  train phase   = bf16 weights + fp32 grads + Adam state shard + activations + runtime
                  + what the paused SGLang engine keeps (its weights and KV cache are released)
  rollout phase = SGLang's static pool (mem_fraction_static x card) + SGLang runtime
                  + what the offloaded trainer keeps on the GPU

The peak is the larger phase (the weight update in between, trainer asleep and SGLang's weights
back, stays below both). Parameters per rank are counted from config.json for the heaviest
pipeline stage (runner/model/shape.py). The constants below are calibrated against what is known
of this recipe on H200 (facts.md section 2): the six verified cells fit in 141 GB, a TP4 x EP2
layout exceeded 140 GB per GPU, one SGLang engine holds about 59 GB of weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.model.parallel import Architecture, Layout, layout_errors, layout_warnings
from runner.model.shape import ModelShape
from runner.recipe import Recipe, args_to_dict

GIB = 1 << 30
# torch.cuda.get_device_properties(0).total_memory, measured on an H200 (nvidia-smi: 143771 MiB).
GPU_MEMORY_BYTES = {"H200": 150_109_880_320}
# Calibrated constants (GiB): the trainer's CUDA context (0.5 GiB measured per process), NCCL
# communicators and workspaces, plus caching-allocator slack in proportion to what it holds; what
# SGLang keeps while paused (context; miles releases its weights, KV cache and CUDA graphs); SGLang's
# memory outside its static pool during rollout; what the offloaded trainer keeps.
TRAIN_RUNTIME_GIB = 3.0
ALLOCATOR_SLACK = 0.05
SGLANG_PAUSED_GIB = 2.0
SGLANG_RUNTIME_GIB = 5.0
TRAIN_OFFLOADED_GIB = 2.0
HEADROOM = 0.95  # above 95% of the card: tight, reported as a warning by lint
CALIBRATION = (
    "calibration: H200 usable memory 139.8 GiB (torch total_memory, measured); trainer runtime "
    f"{TRAIN_RUNTIME_GIB:g} GiB + {ALLOCATOR_SLACK:.0%} allocator slack, paused SGLang {SGLANG_PAUSED_GIB:g} GiB, "
    f"SGLang runtime {SGLANG_RUNTIME_GIB:g} GiB, offloaded trainer {TRAIN_OFFLOADED_GIB:g} GiB; set so that "
    "the six verified 8xH200 cells fit (largest predicted 109 GiB) and TP4xEP2 ETP1, seen to exceed "
    "140 GB/GPU, does not (its weights+grads+Adam alone are 129 GiB); SGLang weights = parameters x 2 B "
    "/ GPUs per engine = 58.8 GiB (facts: ~59 GB)"
)


@dataclass(frozen=True)
class MemorySettings:
    """What the train argv says about memory (defaults: miles v0.1.0 / Megatron's)."""

    max_tokens_per_gpu: int = 1024
    colocate: bool = True
    offload_train: bool = True
    offload_rollout_weights: bool = True
    offload_rollout_kv: bool = True
    sglang_mem_fraction: float = 0.7
    gpus_per_engine: int = 1
    fp32_grads: bool = True
    distributed_optimizer: bool = True
    optimizer_on_cpu: bool = False
    full_recompute: bool = True
    vocab_divisible_by: int = 128

    @classmethod
    def from_argv(cls, argv: list[str], max_tokens_per_gpu: int | None = None) -> MemorySettings:
        a = args_to_dict(argv)
        colocate = "--colocate" in a
        levels = _multi(argv, "--offload-rollout-level") or ["kv_cache", "weight"]
        offload_rollout = (colocate or "--offload" in a or "--offload-rollout" in a) and "--no-offload-rollout" not in a
        offload_train = (colocate or "--offload" in a or "--offload-train" in a) and "--no-offload-train" not in a
        optimizer = str(a.get("--optimizer", "adam")).lower()
        return cls(
            max_tokens_per_gpu=max_tokens_per_gpu or int(a.get("--max-tokens-per-gpu", 1024)),
            colocate=colocate, offload_train=offload_train,
            offload_rollout_weights=offload_rollout and "weight" in levels,
            offload_rollout_kv=offload_rollout and "kv_cache" in levels,
            sglang_mem_fraction=float(a.get("--sglang-mem-fraction-static", 0.9)),
            gpus_per_engine=int(a.get("--rollout-num-gpus-per-engine", 1)),
            fp32_grads="--accumulate-allreduce-grads-in-fp32" in a,
            distributed_optimizer=optimizer == "adam",  # miles turns it on for Adam
            optimizer_on_cpu="--optimizer-cpu-offload" in a,
            full_recompute=a.get("--recompute-granularity") == "full",
            vocab_divisible_by=int(a.get("--make-vocab-size-divisible-by", 128)),
        )


def _multi(argv: list[str], flag: str) -> list[str]:
    if flag not in argv:
        return []
    out = []
    for w in argv[argv.index(flag) + 1:]:
        if w.startswith("--"):
            break
        out.append(w)
    return out


@dataclass
class MemoryEstimate:
    """GiB per GPU on the heaviest pipeline stage."""

    stage: int
    params_dense: int  # parameters on this rank
    params_expert: int
    weights: float
    grads: float
    optimizer: float
    activations: float
    train_runtime: float  # fixed runtime + allocator slack
    sglang_paused: float
    train_phase: float
    sglang_static: float
    sglang_runtime: float
    train_offloaded: float
    rollout_phase: float
    peak: float
    capacity: float

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity

    @property
    def tight(self) -> bool:
        return self.fits and self.peak > HEADROOM * self.capacity


def _gib(nbytes: float) -> float:
    return nbytes / GIB


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
    cap = _gib(capacity_bytes)
    best: MemoryEstimate | None = None
    for stage in range(lay.pp):
        dense, expert = shape.stage_params(stage, lay.pp, lay.tp, lay.ep, lay.etp, s.vocab_divisible_by)
        weights = _gib(2 * (dense + expert))
        grads = _gib((4 if s.fp32_grads else 2) * (dense + expert))
        if s.optimizer_on_cpu:
            optim = 0.0
        elif s.distributed_optimizer:  # fp32 main params + Adam m and v, sharded
            optim = _gib(12 * dense / dp_dense + 12 * expert / dp_expert)
        else:
            optim = _gib(12 * (dense + expert))
        act = _gib(activation_bytes(shape, lay, stage, s))
        sglang_weights = _gib(2 * shape.total_params() / s.gpus_per_engine)
        sglang_static = s.sglang_mem_fraction * cap if s.colocate else 0.0
        paused = SGLANG_PAUSED_GIB if s.colocate else 0.0
        if s.colocate and not s.offload_rollout_weights:
            paused += sglang_weights
        if s.colocate and not s.offload_rollout_kv:
            paused += max(sglang_static - sglang_weights, 0.0)
        runtime = TRAIN_RUNTIME_GIB + ALLOCATOR_SLACK * (weights + grads + optim + act)
        train_phase = weights + grads + optim + act + runtime + paused
        offloaded = TRAIN_OFFLOADED_GIB if s.offload_train else weights + grads + optim + runtime
        rollout_phase = sglang_static + SGLANG_RUNTIME_GIB + offloaded if s.colocate else 0.0
        est = MemoryEstimate(
            stage=stage, params_dense=dense, params_expert=expert, weights=weights, grads=grads,
            optimizer=optim, activations=act, train_runtime=runtime, sglang_paused=paused,
            train_phase=train_phase, sglang_static=sglang_static,
            sglang_runtime=SGLANG_RUNTIME_GIB if s.colocate else 0.0, train_offloaded=offloaded,
            rollout_phase=rollout_phase, peak=max(train_phase, rollout_phase), capacity=cap)
        if best is None or (est.peak, est.train_phase) > (best.peak, best.train_phase):
            best = est
    assert best is not None
    return best


@dataclass
class LayoutRow:
    layout: Layout
    cells: list[str]  # the recipe's cells with this layout (empty: a layout the recipe does not ship)
    errors: list[str]
    warnings: list[str]
    memory: MemoryEstimate | None

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def fits(self) -> bool:
        return self.valid and self.memory is not None and self.memory.fits

    def as_dict(self) -> dict[str, Any]:
        mem = None
        if self.memory:
            mem = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self.memory).items()}
            mem["fits"] = self.memory.fits
        return {"layout": asdict(self.layout), "label": self.layout.label(), "cells": self.cells,
                "valid": self.valid, "fits": self.fits, "errors": self.errors, "warnings": self.warnings,
                "memory_gib": mem}


@dataclass
class PlannerResult:
    recipe: str
    gpus: int
    nodes: int
    gpu: str
    capacity_gib: float
    total_params: int
    expert_params: int
    settings: MemorySettings
    rows: list[LayoutRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, lay: Layout) -> LayoutRow | None:
        return next((r for r in self.rows if r.layout == lay), None)

    def cell_rows(self) -> list[LayoutRow]:
        return [r for r in self.rows if r.cells]

    def as_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "gpus": self.gpus, "nodes": self.nodes, "gpu": self.gpu,
                "capacity_gib": round(self.capacity_gib, 2), "total_params": self.total_params,
                "expert_params": self.expert_params, "settings": asdict(self.settings),
                "calibration": CALIBRATION, "notes": self.notes, "rows": [r.as_dict() for r in self.rows]}


def _powers_of_two(limit: int) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def candidate_layouts(world: int, gpus_per_node: int, arch: Architecture) -> list[Layout]:
    """TP within a node, SP whenever TP > 1 (as every verified cell), ETP 1."""
    out = []
    for tp in _powers_of_two(gpus_per_node):
        for pp in (d for d in range(1, world + 1) if world % d == 0):
            for cp in _powers_of_two(world):
                if world % (tp * pp * cp):
                    continue
                eps = _powers_of_two(world // pp) if arch.num_experts else [1]
                for ep in eps:
                    out.append(Layout(tp, pp, cp, ep, 1, tp > 1))
    return out


def load_hf_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"{path}: cannot read config ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object (a config.json)")
    return data


def recipe_hf_config_path(recipe: Recipe) -> Path:
    return recipe.dir / recipe.files.get("hf_config", "hf_config.json")


def plan_layouts(recipe: Recipe, gpus: int, nodes: int | None = None, *, argv: list[str] | None = None,
                 model_args: list[str] | None = None, hf_config: dict[str, Any] | None = None,
                 gpu: str | None = None) -> PlannerResult:
    """Every legal layout of `recipe` on `gpus` GPUs over `nodes` nodes, with a memory estimate.

    argv: the train argv (default: rendered from the recipe's run script for its default cell).
    """
    if gpus < 1:
        raise UsageError(f"--gpus must be >= 1, got {gpus}")
    hw = recipe.hardware
    if nodes is None:
        per = int(hw.get("gpus_per_node") or gpus)
        nodes = max(1, -(-gpus // per))
    if nodes < 1 or gpus % nodes:
        raise UsageError(f"--gpus {gpus} cannot be spread evenly over --nodes {nodes}")
    gpus_per_node = gpus // nodes
    model_args = recipe.model_args() if model_args is None else model_args
    hf = hf_config if hf_config is not None else load_hf_config(recipe_hf_config_path(recipe))
    try:
        arch = Architecture.from_model_args(model_args, hf)
        shape = ModelShape.from_hf_config(hf)
    except ValueError as e:
        raise UsageError(f"recipe {recipe.name}: cannot plan layouts: {e}") from None
    if argv is None:
        from runner.launch.train_argv import train_argv

        argv = train_argv(recipe, None)
    default_tokens = recipe.cell(None).max_tokens_per_gpu
    settings = MemorySettings.from_argv(argv, default_tokens)
    gpu = gpu or hw.get("gpu", "H200")
    capacity = GPU_MEMORY_BYTES.get(gpu) or int(float(hw.get("min_gpu_memory_gib", 80)) * GIB)
    result = PlannerResult(recipe=recipe.name, gpus=gpus, nodes=nodes, gpu=gpu, capacity_gib=_gib(capacity),
                           total_params=shape.total_params(), expert_params=shape.expert_params(),
                           settings=settings)
    if not settings.colocate:
        result.notes.append("not colocated: rollout engines run on other GPUs; only the trainer is estimated")
    if not settings.full_recompute:
        result.notes.append("no full recompute: the activation estimate is rough")

    cells_by_layout: dict[Layout, list[str]] = {}
    for c in recipe.cells.values():
        cells_by_layout.setdefault(Layout.of(c), []).append(c.name)
    layouts = list(dict.fromkeys([*cells_by_layout, *candidate_layouts(gpus, gpus_per_node, arch)]))
    for lay in layouts:
        errs = layout_errors(arch, lay, gpus)
        if lay.tp > gpus_per_node:
            errs.append(f"TP={lay.tp} spans nodes ({gpus_per_node} GPUs per node)")
        cells = cells_by_layout.get(lay, [])
        if errs and not cells:
            continue  # illegal layouts nobody asked for are not listed
        tokens = max((recipe.cells[c].max_tokens_per_gpu for c in cells), default=default_tokens)
        mem = None
        if not errs:
            s = MemorySettings(**{**asdict(settings), "max_tokens_per_gpu": tokens})
            mem = estimate_memory(shape, lay, gpus, s, capacity)
        result.rows.append(LayoutRow(lay, cells, errs, layout_warnings(arch, lay, gpus), mem))
    result.rows.sort(key=lambda r: (not r.cells, not r.valid, round(r.memory.peak, 1) if r.memory else 0.0,
                                    r.memory.train_phase if r.memory else 0.0))
    return result


def _group_label(rows: list[LayoutRow]) -> str:
    lay = rows[0].layout
    cps = "/".join(str(r.layout.cp) for r in rows)
    return f"TP{lay.tp} PP{lay.pp} CP{cps} EP{lay.ep} ETP{lay.etp}" + (" +SP" if lay.sp else "")


def _grouped(rows: list[LayoutRow]) -> list[list[LayoutRow]]:
    """Layouts that differ only in CP have the same per-GPU estimate (max_tokens_per_gpu is per CP
    rank and the optimizer shards over DP x CP): one line each."""
    groups: dict[tuple, list[LayoutRow]] = {}
    for r in rows:
        lay = r.layout
        groups.setdefault((lay.tp, lay.pp, lay.ep, lay.etp, lay.sp, tuple(r.cells), tuple(r.errors)), []).append(r)
    return list(groups.values())


def format_table(result: PlannerResult, max_over: int = 6) -> str:
    """The recipe's cells, then every other legal layout that fits, then the closest that do not."""
    s = result.settings
    lines = [
        f"# {result.recipe} on {result.gpus} GPU(s) = {result.nodes} node(s) x {result.gpus // result.nodes} "
        f"{result.gpu} ({result.capacity_gib:.1f} GiB each)",
        f"# model: {result.total_params:,} parameters ({result.expert_params:,} in routed experts), "
        f"counted from config.json",
        f"# GiB per GPU, heaviest pipeline stage; max_tokens_per_gpu {s.max_tokens_per_gpu}, "
        f"sglang mem_fraction_static {s.sglang_mem_fraction:g}, colocate={s.colocate}, "
        f"offload train/rollout={s.offload_train}/{s.offload_rollout_weights}, "
        f"distributed optimizer={s.distributed_optimizer}, fp32 grads={s.fp32_grads}",
        "# train = weights + grads + optim (Adam shard) + act (full recompute) + other (runtime, slack, "
        "paused SGLang); rollout = SGLang static pool + runtime + offloaded trainer",
        f"# {CALIBRATION}",
        *(f"# note: {n}" for n in result.notes),
        "",
        f"{'layout':<32} {'cell':<22} {'weights':>7} {'grads':>6} {'optim':>6} {'act':>5} {'other':>5} "
        f"{'train':>6} {'rollout':>7} {'peak':>6}  verdict",
    ]

    def line(group: list[LayoutRow]) -> str:
        r = group[0]
        label, cell = _group_label(group), ",".join(r.cells) or "-"
        if not r.valid:
            return f"{label:<32} {cell:<22} INVALID: {'; '.join(r.errors)}"
        m = r.memory
        assert m is not None
        verdict = "fits" if m.fits else f"OVER by {m.peak - m.capacity:.1f}"
        if m.tight:
            verdict = "fits (tight)"
        if r.warnings:
            verdict += " [warn: " + "; ".join(r.warnings) + "]"
        other = m.train_runtime + m.sglang_paused
        return (f"{label:<32} {cell:<22} {m.weights:>7.1f} {m.grads:>6.1f} {m.optimizer:>6.1f} "
                f"{m.activations:>5.1f} {other:>5.1f} {m.train_phase:>6.1f} {m.rollout_phase:>7.1f} "
                f"{m.peak:>6.1f}  {verdict}")

    others = [r for r in result.rows if not r.cells]
    fitting = _grouped([r for r in others if r.fits])
    over = _grouped([r for r in others if r.valid and not r.fits])
    lines += ["## the recipe's cells", *(line(g) for g in _grouped(result.cell_rows()))]
    lines += [f"## other legal layouts that fit ({len(fitting)} lines)", *(line(g) for g in fitting)]
    lines += [f"## legal layouts over memory ({len(over)} lines; the {min(max_over, len(over))} closest shown)",
              *(line(g) for g in over[:max_over])]
    return "\n".join(lines)
