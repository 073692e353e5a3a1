"""Megatron's divisibility rules for a parallel layout, checked from the frozen model args.

The architecture numbers come from the recipe's model args file (the same flags the trainer
gets), so the check cannot disagree with what would actually be launched. A hybrid (Mamba)
model's SSM head and group counts are not trainer flags (the bridge reads them from config.json),
so they come from the HF config when one is given.

Rules, as the pinned Megatron-LM (radixark miles-main 37f9161) enforces them:
- TP*PP*CP divides the world; EP*ETP divides the GPUs of one pipeline stage (expert folding).
- attention heads % TP == 0; query groups a multiple *or a divisor* of TP (fewer KV heads than TP
  ranks are replicated, TransformerConfig.__post_init__).
- layers % PP == 0. A hybrid model's stage takes a contiguous slice of the layer pattern
  (MambaStack._select_layers_for_pipeline_parallel); stages need not hold equal numbers of each
  layer type, so this is no divisibility rule, but the memory of the stages differs (planner).
- Mamba: SSM heads % TP, SSM groups % TP (MambaMixer); with CP, (heads/TP) % CP and the local
  group count and CP divide one another (MambaContextParallel).
- experts % EP; MoE FFN size % ETP.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from runner.recipe import Cell, args_to_dict


@dataclass(frozen=True)
class Architecture:
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    num_experts: int  # 0 for a dense model
    moe_ffn_hidden_size: int = 0  # 0: unknown or dense
    mamba_num_heads: int = 0  # 0: not a hybrid model, or no HF config given
    mamba_num_groups: int = 0

    @classmethod
    def from_model_args(cls, argv: list[str], hf_config: dict[str, Any] | None = None) -> Architecture:
        a = args_to_dict(argv)

        def num(flag: str, default: int | None = None) -> int:
            v = a.get(flag, default)
            if v is None or v is True:
                raise ValueError(f"model args lack {flag} <int>")
            return int(v)

        heads = num("--num-attention-heads")
        # Without --group-query-attention Megatron ignores --num-query-groups (one group per head).
        groups = num("--num-query-groups", heads) if "--group-query-attention" in a else heads
        arch = cls(
            num_layers=num("--num-layers"),
            num_attention_heads=heads,
            num_query_groups=groups,
            num_experts=num("--num-experts", 0),
            moe_ffn_hidden_size=num("--moe-ffn-hidden-size", int(a.get("--ffn-hidden-size", 0) or 0)),
        )
        return arch.with_hf_config(hf_config) if hf_config else arch

    def with_hf_config(self, hf: dict[str, Any]) -> Architecture:
        """Add the SSM head/group counts of a hybrid model from its config.json."""
        pattern = hf.get("hybrid_override_pattern") or ""
        types = hf.get("layers_block_type") or []
        if "M" not in pattern and not any(t in ("mamba", "linear_attention") for t in types):
            return self
        return replace(self, mamba_num_heads=int(hf.get("mamba_num_heads") or 0),
                       mamba_num_groups=int(hf.get("n_groups") or 0))


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    cp: int
    ep: int
    etp: int
    sp: bool

    @classmethod
    def of(cls, cell: Cell) -> Layout:
        return cls(cell.tp, cell.pp, cell.cp, cell.ep, cell.etp, cell.sp)

    def label(self) -> str:
        s = f"TP{self.tp} PP{self.pp} CP{self.cp} EP{self.ep} ETP{self.etp}"
        return s + (" +SP" if self.sp else "")


def layout_errors(arch: Architecture, lay: Layout, world: int) -> list[str]:
    """Every rule the layout breaks on `world` GPUs, each a sentence naming the values."""
    errs: list[str] = []
    model_par = lay.tp * lay.pp * lay.cp
    if world % model_par:
        errs.append(f"TP*PP*CP = {lay.tp}*{lay.pp}*{lay.cp} = {model_par} does not divide {world} GPUs")
    if arch.num_attention_heads % lay.tp:
        errs.append(f"{arch.num_attention_heads} attention heads are not divisible by TP={lay.tp}")
    if arch.num_query_groups % lay.tp and lay.tp % arch.num_query_groups:
        errs.append(f"{arch.num_query_groups} query groups are neither a multiple nor a divisor of TP={lay.tp}")
    if arch.num_layers % lay.pp:
        errs.append(f"{arch.num_layers} layers cannot be split evenly over PP={lay.pp} stages")
    if arch.num_experts:
        if arch.num_experts % lay.ep:
            errs.append(f"{arch.num_experts} experts are not divisible by EP={lay.ep}")
        per_stage = world // lay.pp if world % lay.pp == 0 else None
        if per_stage is None or per_stage % (lay.ep * lay.etp):
            errs.append(f"EP*ETP = {lay.ep * lay.etp} does not divide the {world}/{lay.pp} GPUs of a "
                        f"pipeline stage")
        if arch.moe_ffn_hidden_size and arch.moe_ffn_hidden_size % lay.etp:
            errs.append(f"MoE FFN size {arch.moe_ffn_hidden_size} is not divisible by ETP={lay.etp}")
    elif lay.ep != 1:
        errs.append(f"EP={lay.ep} on a dense model (no --num-experts)")
    if lay.sp and lay.tp == 1:
        errs.append("sequence parallel needs TP > 1 (Megatron would silently turn it off)")
    errs += _mamba_errors(arch, lay)
    return errs


def _mamba_errors(arch: Architecture, lay: Layout) -> list[str]:
    heads, groups = arch.mamba_num_heads, arch.mamba_num_groups
    if not heads or not groups:
        return []
    errs: list[str] = []
    if heads % lay.tp:
        errs.append(f"{heads} Mamba heads are not divisible by TP={lay.tp}")
    if groups % lay.tp:
        errs.append(f"{groups} Mamba groups (n_groups) are not divisible by TP={lay.tp}")
    if errs or lay.cp == 1:
        return errs
    heads_tp, groups_tp = heads // lay.tp, groups // lay.tp
    if heads_tp % lay.cp:
        errs.append(f"{heads} Mamba heads are not divisible by TP*CP = {lay.tp * lay.cp}")
    if groups_tp < lay.cp and lay.cp % groups_tp:
        errs.append(f"CP={lay.cp} is not a multiple of the {groups_tp} Mamba groups per TP rank")
    elif groups_tp >= lay.cp and groups_tp % lay.cp:
        errs.append(f"the {groups_tp} Mamba groups per TP rank are not divisible by CP={lay.cp}")
    return errs


def layout_warnings(arch: Architecture, lay: Layout, world: int) -> list[str]:
    """Legal layouts Megatron warns about: they run, but not as intended."""
    warns: list[str] = []
    if arch.num_experts and lay.ep > 1 and lay.tp > 1 and not lay.sp:
        warns.append(f"EP={lay.ep} with TP={lay.tp} and no sequence parallel (Megatron: 'sequence "
                     f"parallelism must be used')")
    return warns
