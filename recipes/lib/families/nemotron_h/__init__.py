"""Model-family module for NemotronH (hybrid Mamba + attention, with MoE or dense MLP layers).

Used by the recipes whose config.json has `model_type = "nemotron_h"` (nemotron3_nano, the 30B MoE;
its dense 4B sibling; the tiny CPU recipe). The runner loads this package by path
(runner/model/family.py) and calls only the names below; see docs/adapters.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.model.finding import Finding
from runner.model.layout import Layout
from runner.model.memory import MemoryEstimate, MemorySettings

from . import memory as _memory
from .parallel import mamba_layout_errors, ssm_counts
from .rules import is_nemotron_h
from .rules import model_findings as _model_findings
from .shape import ModelShape

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
