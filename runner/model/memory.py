"""The memory model's vocabulary, shared by the planner and each family's memory model.

A model family (runner/model/family.py) estimates the memory of one layout from its own shape
rules and calibration (`estimate_memory`); the framework adapter reads the settings that matter
from the train argv (`memory_settings`). What the card offers is here, by GPU name.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
# What torch.cuda.get_device_properties(0).total_memory reports, by the recipe's `hardware.gpu`.
# H200: measured (nvidia-smi 143771 MiB). H100 (80 GB HBM3): nvidia-smi's 81559 MiB less the 615 MiB
# the driver kept back on the H200 (143771 MiB - 150,109,880,320 B); not measured on an H100.
GPU_MEMORY_BYTES = {"H200": 150_109_880_320, "H100": (81559 - 615) * (1 << 20)}
HEADROOM = 0.95  # above 95% of the card: tight, reported as a warning by lint


def capacity_bytes(gpu: str, min_gpu_memory_gib: float | None = None) -> int:
    """The card's usable memory: the table's value, else the recipe's stated minimum, else 80 GiB."""
    return GPU_MEMORY_BYTES.get(gpu) or int(float(min_gpu_memory_gib or 80) * GIB)


@dataclass(frozen=True)
class MemorySettings:
    """What the train argv says about memory (the framework adapter reads it: `memory_settings`)."""

    max_tokens_per_gpu: int = 1024
    colocate: bool = True
    offload_train: bool = True
    offload_rollout_weights: bool = True
    offload_rollout_kv: bool = True
    rollout_mem_fraction: float = 0.7
    gpus_per_engine: int = 1
    fp32_grads: bool = True
    distributed_optimizer: bool = True
    optimizer_on_cpu: bool = False
    full_recompute: bool = True
    vocab_divisible_by: int = 128


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
    rollout_paused: float
    train_phase: float
    rollout_static: float
    rollout_runtime: float
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


def gib(nbytes: float) -> float:
    return nbytes / GIB
