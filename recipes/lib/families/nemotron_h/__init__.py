"""Model-family module for NemotronH (hybrid Mamba + attention, with MoE or dense MLP layers).

Used by the recipes whose config.json has `model_type = "nemotron_h"` (nemotron3_nano, the 30B MoE;
its dense 4B sibling; the tiny CPU recipe). The runner loads this package by path
(runner/model/family.py) and calls only the names below; see docs/adapters.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.layout import Layout
from runner.model.finding import Finding
from runner.model.memory import MemoryEstimate, MemorySettings

from . import memory as _memory
from .parallel import mamba_layout_errors, ssm_counts
from .rules import is_nemotron_h
from .rules import model_findings as _model_findings
from .shape import ModelShape, layer_pattern

NAME = "nemotron_h"
CALIBRATION = _memory.CALIBRATION


def matches(cfg: dict[str, Any]) -> bool:
    return is_nemotron_h(cfg)


def model_findings(model_args: list[str], cfg: dict[str, Any]) -> list[Finding]:
    """The frozen Megatron model flags against config.json (rules.py)."""
    return _model_findings(model_args, cfg)


def layout_rules(cfg: dict[str, Any]) -> Callable[[Layout], list[str]]:
    """The Mamba mixer's divisibility rules for this config (none without Mamba layers)."""
    heads, groups = ssm_counts(cfg)
    return lambda lay: mamba_layout_errors(heads, groups, lay)


def shape(cfg: dict[str, Any]) -> ModelShape:
    """Parameter counts from config.json; ValueError naming the field when it cannot be read."""
    return ModelShape.from_hf_config(cfg)


def estimate_memory(model: ModelShape, lay: Layout, world: int, settings: MemorySettings,
                    capacity_bytes: int) -> MemoryEstimate:
    return _memory.estimate_memory(model, lay, world, settings, capacity_bytes)


# Megatron provider field -> the config.json key that states it, for the fields no model flag
# carries (the `model` preflight compares them with what the bridge built; docs/adapters.md).
_PROVIDER_FIELDS = {
    "hybrid_override_pattern": "hybrid_override_pattern",
    "mamba_num_heads": "mamba_num_heads",
    "mamba_head_dim": "mamba_head_dim",
    "mamba_num_groups": "n_groups",
    "mamba_state_dim": "ssm_state_size",
    "seq_length": "max_position_embeddings",
}


def provider_claims(cfg: dict[str, Any], where: str = "hf_config.json") -> list[tuple[str, Any, str]]:
    """(provider field, value, source) for what the recipe's config.json states beyond the model flags."""
    out = [(field, cfg[key], f"{where} {key}") for field, key in _PROVIDER_FIELDS.items() if key in cfg]
    if "hybrid_override_pattern" not in cfg and layer_pattern(cfg):
        out.insert(0, ("hybrid_override_pattern", layer_pattern(cfg), f"{where} layers_block_type"))
    return out
