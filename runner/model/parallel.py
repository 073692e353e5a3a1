"""Megatron's generic divisibility rules for a parallel layout, checked from the frozen model args.

The architecture numbers come from the recipe's model args file (the same flags the trainer
gets), so the check cannot disagree with what would actually be launched. Rules a model family
adds (its own mixers' head and group counts, read from config.json) come from the family module
(runner/model/family.py) as `Architecture.family_rules`.

Rules, as the pinned Megatron-LM (radixark miles-main 37f9161) enforces them:
- TP*PP*CP divides the world; EP*ETP divides the GPUs of one pipeline stage (expert folding).
- attention heads % TP == 0; query groups a multiple *or a divisor* of TP (fewer KV heads than TP
  ranks are replicated, TransformerConfig.__post_init__).
- layers % PP == 0.
- experts % EP; MoE FFN size % ETP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runner.layout import Layout
from runner.recipe import args_to_dict


@dataclass(frozen=True)
class Architecture:
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    num_experts: int  # 0 for a dense model
    moe_ffn_hidden_size: int = 0  # 0: unknown or dense
    # the model family's own rules (runner/model/family.py); not part of equality
    family_rules: Callable[[Layout], list[str]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_model_args(cls, argv: list[str]) -> Architecture:
        a = args_to_dict(argv)

        def num(flag: str, default: int | None = None) -> int:
            v = a.get(flag, default)
            if v is None or v is True:
                raise ValueError(f"model args lack {flag} <int>")
            return int(v)

        heads = num("--num-attention-heads")
        # Without --group-query-attention Megatron ignores --num-query-groups (one group per head).
        groups = num("--num-query-groups", heads) if "--group-query-attention" in a else heads
        return cls(
            num_layers=num("--num-layers"),
            num_attention_heads=heads,
            num_query_groups=groups,
            num_experts=num("--num-experts", 0),
            moe_ffn_hidden_size=num("--moe-ffn-hidden-size", int(a.get("--ffn-hidden-size", 0) or 0)),
        )


__all__ = ["Architecture", "Layout", "layout_errors", "layout_warnings"]


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
    if arch.family_rules is not None:
        errs += arch.family_rules(lay)
    return errs


def layout_warnings(arch: Architecture, lay: Layout, world: int) -> list[str]:
    """Legal layouts Megatron warns about: they run, but not as intended."""
    warns: list[str] = []
    if arch.num_experts and lay.ep > 1 and lay.tp > 1 and not lay.sp:
        warns.append(f"EP={lay.ep} with TP={lay.tp} and no sequence parallel (Megatron: 'sequence "
                     f"parallelism must be used')")
    return warns
