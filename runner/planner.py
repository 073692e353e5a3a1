"""Which parallel layouts of a recipe are legal on N GPUs, and whether each fits in GPU memory.

Legality is Megatron's generic divisibility rules (runner/model/parallel.py) plus the model
family's own (runner/model/family.py); memory is the family's memory model, with the settings the
recipe's framework adapter reads from the train argv (runner/frameworks/). A recipe whose family
provides no memory model cannot be planned: a usage error says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from runner.console import table
from runner.errors import UsageError
from runner.frameworks import framework_of
from runner.layout import Layout
from runner.model.family import (
    family_architecture,
    family_name,
    has_memory_model,
    load_family,
    load_hf_config,
    no_rules,
    recipe_hf_config_path,
)
from runner.model.memory import MemoryEstimate, MemorySettings, capacity_bytes, gib
from runner.model.parallel import Architecture, layout_errors, layout_warnings
from runner.plan.render import render_plan
from runner.recipe import Recipe


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
    calibration: str = ""
    config_source: str = "config.json"  # the file the shape was counted from
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
                "calibration": self.calibration, "notes": self.notes, "rows": [r.as_dict() for r in self.rows]}


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
        per = hw.gpus_per_node or gpus
        nodes = max(1, -(-gpus // per))
    if nodes < 1 or gpus % nodes:
        raise UsageError(f"--gpus {gpus} cannot be spread evenly over --nodes {nodes}")
    gpus_per_node = gpus // nodes
    model_args = recipe.model_args() if model_args is None else model_args
    cfg_path = recipe_hf_config_path(recipe)
    hf = hf_config if hf_config is not None else load_hf_config(cfg_path)
    fam_name = family_name(recipe.model_family, hf)
    family = load_family(fam_name)
    if family is None:
        raise UsageError(f"recipe {recipe.name}: cannot plan layouts: {no_rules(fam_name)}")
    if not has_memory_model(family):
        raise UsageError(f"recipe {recipe.name}: cannot plan layouts: model family {fam_name} provides no memory "
                         "model (shape and estimate_memory in its module)")
    try:
        arch = family_architecture(family, model_args, hf)
        shape = family.shape(hf)
    except ValueError as e:
        raise UsageError(f"recipe {recipe.name}: cannot plan layouts: {e}") from None
    if argv is None:  # `recipe plan --gpus`: the first and only rendering of this plan
        argv = render_plan(recipe, None).argv

    default_tokens = recipe.cell(None).max_tokens_per_gpu
    settings = framework_of(recipe).memory_settings(argv, default_tokens)
    gpu = gpu or hw.gpu or "H200"
    capacity = capacity_bytes(gpu, hw.min_gpu_memory_gib)
    result = PlannerResult(recipe=recipe.name, gpus=gpus, nodes=nodes, gpu=gpu, capacity_gib=gib(capacity),
                           total_params=shape.total_params(), expert_params=shape.expert_params(),
                           settings=settings, calibration=getattr(family, "CALIBRATION", ""),
                           config_source="the given config" if hf_config is not None else cfg_path.name)
    if not settings.colocate:
        result.notes.append("not colocated: rollout engines run on other GPUs; only the trainer is estimated")
    if not settings.full_recompute:
        result.notes.append("no full recompute: the activation estimate is rough")

    cells_by_layout: dict[Layout, list[str]] = {}
    for c in recipe.cells.values():
        cells_by_layout.setdefault(c.layout, []).append(c.name)
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
            mem = family.estimate_memory(shape, lay, gpus, s, capacity)
        result.rows.append(LayoutRow(lay, cells, errs, layout_warnings(arch, lay, gpus), mem))
    result.rows.sort(key=lambda r: (not r.cells, not r.valid, round(r.memory.peak, 1) if r.memory else 0.0,
                                    r.memory.train_phase if r.memory else 0.0))
    return result


def _group_label(rows: list[LayoutRow]) -> str:
    lay = rows[0].layout
    cps = "/".join(str(r.layout.cp) for r in rows)
    return lay.label(cp=cps)


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
        f"counted from {result.config_source}",
        f"# GiB per GPU, heaviest pipeline stage; max_tokens_per_gpu {s.max_tokens_per_gpu}, "
        f"rollout mem_fraction_static {s.rollout_mem_fraction:g}, colocate={s.colocate}, "
        f"offload train/rollout={s.offload_train}/{s.offload_rollout_weights}, "
        f"distributed optimizer={s.distributed_optimizer}, fp32 grads={s.fp32_grads}",
        "# train = weights + grads + optim (Adam shard) + act (full recompute) + other (runtime, slack, "
        "paused rollout engine); rollout = the engine's static pool + runtime + offloaded trainer",
        f"# {result.calibration}",
        *(f"# note: {n}" for n in result.notes),
    ]
    head = ("layout", "cell", "weights", "grads", "optim", "act", "other", "train", "rollout", "peak", "verdict")

    def row(group: list[LayoutRow]) -> tuple[str, ...]:
        r = group[0]
        label, cell = _group_label(group), ",".join(r.cells) or "-"
        if not r.valid:
            return (label, cell, *[""] * 8, f"INVALID: {'; '.join(r.errors)}")
        m = r.memory
        assert m is not None
        verdict = "fits" if m.fits else f"OVER by {m.peak - m.capacity:.1f}"
        if m.tight:
            verdict = "fits (tight)"
        if r.warnings:
            verdict += " [warn: " + "; ".join(r.warnings) + "]"
        gib = (m.weights, m.grads, m.optimizer, m.activations, m.train_runtime + m.rollout_paused, m.train_phase,
               m.rollout_phase, m.peak)
        return (label, cell, *(f"{v:.1f}" for v in gib), verdict)

    def section(title: str, groups: list[list[LayoutRow]]) -> list[str]:
        return ["", title, table(head, [row(g) for g in groups], no_wrap=head[1:-1], right=head[2:-1])]

    others = [r for r in result.rows if not r.cells]
    fitting = _grouped([r for r in others if r.fits])
    over = _grouped([r for r in others if r.valid and not r.fits])
    lines += section("## the recipe's cells", _grouped(result.cell_rows()))
    lines += section(f"## other legal layouts that fit ({len(fitting)} lines)", fitting)
    lines += section(f"## legal layouts over memory ({len(over)} lines; the {min(max_over, len(over))} closest "
                     "shown)", over[:max_over])
    return "\n".join(lines)
