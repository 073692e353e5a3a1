"""NemotronH's own parallel-layout rules: the Mamba mixer's, on top of Megatron's generic ones.

As the pinned Megatron-LM (radixark miles-main 37f91617) enforces them: SSM heads % TP and SSM
groups % TP (MambaMixer); with CP, (heads/TP) % CP, and the local group count and CP divide one
another (MambaContextParallel). A stage takes a contiguous slice of the layer pattern
(MambaStack._select_layers_for_pipeline_parallel), so stages need not hold equal numbers of each
layer type: no divisibility rule, but their memory differs (the memory model counts each stage).
The SSM counts are not trainer flags (the bridge reads them from config.json).
"""

from __future__ import annotations

from typing import Any

from runner.layout import Layout


def ssm_counts(cfg: dict[str, Any]) -> tuple[int, int]:
    """(SSM heads, SSM groups) of a config with Mamba layers; (0, 0) without."""
    pattern = cfg.get("hybrid_override_pattern") or ""
    types = cfg.get("layers_block_type") or []
    if "M" not in pattern and not any(t in ("mamba", "linear_attention") for t in types):
        return 0, 0
    return int(cfg.get("mamba_num_heads") or 0), int(cfg.get("n_groups") or 0)


def mamba_layout_errors(heads: int, groups: int, lay: Layout) -> list[str]:
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
