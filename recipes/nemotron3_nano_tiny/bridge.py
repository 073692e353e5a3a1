"""The frozen Megatron model flags (model_args.txt) checked against the HF config the trainer loads.

miles trains Megatron with the flags and converts weights from the HF checkpoint through Megatron-Bridge;
rollouts run the HF config. If the two disagree, train and rollout run different models while every
tensor still loads. The sharpest case: the router scaling factor (`--moe-router-topk-scaling-factor 2.5`
vs `routed_scaling_factor`), which transformers' NemotronHConfig defaults to 1.0 when a config omits it.

The comparison uses the *effective* config (NemotronHConfig filled with its defaults), so an omitted
key is compared by the value transformers will really use, and names it as absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# Megatron flag -> (HF config attribute, how the flag's value maps onto it)
_INT = int
_FLOAT = float
VALUED: dict[str, tuple[str, object]] = {
    "--num-attention-heads": ("num_attention_heads", _INT),
    "--num-query-groups": ("num_key_value_heads", _INT),
    "--kv-channels": ("head_dim", _INT),
    "--hidden-size": ("hidden_size", _INT),
    "--ffn-hidden-size": ("intermediate_size", _INT),
    "--vocab-size": ("vocab_size", _INT),
    "--num-experts": ("n_routed_experts", _INT),
    "--moe-router-topk": ("num_experts_per_tok", _INT),
    "--moe-ffn-hidden-size": ("moe_intermediate_size", _INT),
    "--moe-shared-expert-intermediate-size": ("moe_shared_expert_intermediate_size", _INT),
    "--moe-router-num-groups": ("n_group", _INT),
    "--moe-router-group-topk": ("topk_group", _INT),
    "--moe-router-topk-scaling-factor": ("routed_scaling_factor", _FLOAT),
}
# Flags that describe what NemotronH's HF code hard-wires; the check only accepts these values.
FIXED = {
    "--moe-router-score-function": "sigmoid",   # NemotronHTopkRouter: sigmoid scores
    "--position-embedding-type": "none",        # NemotronH attention applies no RoPE
    "--normalization": "RMSNorm",
}


def parse_flags(words: list[str]) -> dict[str, str | bool]:
    """`--flag value` / `--switch` words (as runner.recipe.read_args_file returns them) to a dict."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            out[words[i]] = words[i + 1]
            i += 2
        else:
            out[words[i]] = True
            i += 1
    return out


def read_flags(path: Path) -> dict[str, str | bool]:
    words: list[str] = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            words.extend(line.split())
    return parse_flags(words)


def effective_config(raw: dict):
    """NemotronHConfig as transformers builds it from this dict: omitted keys take its defaults."""
    from transformers import NemotronHConfig

    keep = {k: v for k, v in raw.items() if k not in ("architectures", "auto_map", "transformers_version")}
    return NemotronHConfig(**keep)


def mismatches(flags: dict[str, str | bool], raw: dict) -> list[str]:
    """One line per disagreement between the flags and the effective HF config; [] when they agree."""
    cfg = effective_config(raw)
    out: list[str] = []

    def absent(key: str) -> str:
        return " (absent from config.json: the transformers default)" if key not in raw else ""

    for flag, (key, conv) in VALUED.items():
        if flag not in flags:
            continue
        want = conv(flags[flag])
        got = getattr(cfg, key)
        same = math.isclose(want, got, rel_tol=0, abs_tol=1e-12) if conv is _FLOAT else want == got
        if not same:
            out.append(f"{key}: model args say {flag} {flags[flag]}, the HF config gives {got!r}{absent(key)}")
    if "--num-layers" in flags and int(flags["--num-layers"]) != len(cfg.layers_block_type):
        out.append(f"hybrid_override_pattern: model args say --num-layers {flags['--num-layers']}, "
                   f"the HF config has {len(cfg.layers_block_type)} layers ({cfg.hybrid_override_pattern})")
    if "--make-vocab-size-divisible-by" in flags and cfg.vocab_size % int(flags["--make-vocab-size-divisible-by"]):
        out.append(f"vocab_size: {cfg.vocab_size} is not a multiple of --make-vocab-size-divisible-by "
                   f"{flags['--make-vocab-size-divisible-by']}, so Megatron would pad the embedding")
    tied = "--untie-embeddings-and-output-weights" not in flags
    if bool(cfg.tie_word_embeddings) != tied:
        out.append(f"tie_word_embeddings: the HF config says {cfg.tie_word_embeddings}, the model args "
                   f"{'do not ' if tied else ''}untie embeddings and output weights")
    if "--disable-bias-linear" in flags and (cfg.attention_bias or cfg.mlp_bias):
        out.append("attention_bias/mlp_bias: model args say --disable-bias-linear, the HF config has biases")
    for flag, value in FIXED.items():
        if flag in flags and flags[flag] != value:
            out.append(f"{flag}: NemotronH's HF code implements only '{value}', model args say '{flags[flag]}'")
    return out


def check_files(model_args: Path, config_json: Path) -> list[str]:
    return mismatches(read_flags(model_args), json.loads(Path(config_json).read_text()))


def gate_scales(model) -> list[float]:
    """The routed scaling factor every MoE router of a built model really applies (each keeps a copy)."""
    return [m.routed_scaling_factor for name, m in model.named_modules() if type(m).__name__ == "NemotronHTopkRouter"]
