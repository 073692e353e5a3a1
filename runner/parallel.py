"""Megatron's divisibility rules for a parallel layout, checked from the frozen model args.

The architecture numbers come from the recipe's model args file (the same flags the trainer
gets), so the check cannot disagree with what would actually be launched.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.recipe import Cell, args_to_dict


@dataclass(frozen=True)
class Architecture:
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    num_experts: int  # 0 for a dense model

    @classmethod
    def from_model_args(cls, argv: list[str]) -> Architecture:
        a = args_to_dict(argv)

        def num(flag: str, default: int | None = None) -> int:
            v = a.get(flag, default)
            if v is None or v is True:
                raise ValueError(f"model args lack {flag} <int>")
            return int(v)

        heads = num("--num-attention-heads")
        return cls(
            num_layers=num("--num-layers"),
            num_attention_heads=heads,
            num_query_groups=num("--num-query-groups", heads),
            num_experts=num("--num-experts", 0),
        )


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
    if arch.num_query_groups % lay.tp:
        errs.append(f"{arch.num_query_groups} query groups are not divisible by TP={lay.tp}")
    if arch.num_layers % lay.pp:
        errs.append(f"{arch.num_layers} layers cannot be split evenly over PP={lay.pp} stages")
    if arch.num_experts:
        if arch.num_experts % lay.ep:
            errs.append(f"{arch.num_experts} experts are not divisible by EP={lay.ep}")
        per_stage = world // lay.pp if world % lay.pp == 0 else None
        if per_stage is None or per_stage % (lay.ep * lay.etp):
            errs.append(f"EP*ETP = {lay.ep * lay.etp} does not divide the {world}/{lay.pp} GPUs of a "
                        f"pipeline stage")
    elif lay.ep != 1:
        errs.append(f"EP={lay.ep} on a dense model (no --num-experts)")
    if lay.sp and lay.tp == 1:
        errs.append("sequence parallel needs TP > 1 (Megatron would silently turn it off)")
    return errs
