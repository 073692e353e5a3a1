"""A NemotronH (hybrid Mamba + attention + MoE) model's shape from its config.json, and its
parameter count, whole or as held by one rank of a Megatron layout.

Counted from the architecture, not copied from a model card: for the pinned
Nemotron-3-Nano-30B-A3B config this gives 31,577,937,344, the count transformers reports for
NemotronHForCausalLM (tests/test_model_shape.py checks both). The MoE routers' expert-bias vectors
are buffers, not parameters, there and in Megatron; they are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# config.json's layers_block_type names -> the one-letter hybrid_override_pattern symbols
_BLOCK_SYMBOL = {"mamba": "M", "linear_attention": "M", "moe": "E", "attention": "*",
                 "full_attention": "*", "mlp": "-"}
LAYER_NAMES = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}


def layer_pattern(cfg: dict[str, Any]) -> str:
    """The hybrid layer pattern ('M' Mamba, 'E' MoE, '*' attention, '-' MLP), '' if none."""
    pattern = cfg.get("hybrid_override_pattern")
    if isinstance(pattern, str):
        return pattern
    types = cfg.get("layers_block_type")
    if isinstance(types, list):
        return "".join(_BLOCK_SYMBOL.get(t, "?") for t in types)
    return ""


@dataclass(frozen=True)
class ModelShape:
    pattern: str
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int  # dense MLP ('-') intermediate size
    experts: int
    topk: int
    moe_ffn: int
    shared_ffn: int  # total shared-expert intermediate size
    mamba_heads: int
    mamba_head_dim: int
    mamba_groups: int
    ssm_state: int
    conv_kernel: int
    tied: bool

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], where: str = "config.json") -> ModelShape:
        pattern = layer_pattern(cfg)
        if not pattern:
            raise ValueError(f"{where}: no hybrid_override_pattern or layers_block_type; "
                             f"not a NemotronH config")
        if set(pattern) - set(LAYER_NAMES):
            raise ValueError(f"{where}: hybrid_override_pattern {pattern!r} has symbols other than M E * -")

        def num(key: str, default: int | None = None) -> int:
            v = cfg.get(key, default)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{where}: field '{key}' must be an integer, got {v!r}")
            return v

        heads = num("num_attention_heads")
        moe_ffn = num("moe_intermediate_size", 0) if "E" in pattern else 0
        n_shared = num("n_shared_experts", 1) if "E" in pattern else 0
        return cls(
            pattern=pattern, hidden=num("hidden_size"), vocab=num("vocab_size"), heads=heads,
            kv_heads=num("num_key_value_heads", heads), head_dim=num("head_dim", num("hidden_size") // heads),
            ffn=num("intermediate_size", 0),
            experts=num("n_routed_experts", 0) if "E" in pattern else 0,
            topk=num("num_experts_per_tok", 0) if "E" in pattern else 0,
            moe_ffn=moe_ffn,
            shared_ffn=num("moe_shared_expert_intermediate_size", moe_ffn * n_shared) if n_shared else 0,
            mamba_heads=num("mamba_num_heads", 0), mamba_head_dim=num("mamba_head_dim", 0),
            mamba_groups=num("n_groups", 0), ssm_state=num("ssm_state_size", 0),
            conv_kernel=num("conv_kernel", 4), tied=bool(cfg.get("tie_word_embeddings", False)),
        )

    @property
    def num_layers(self) -> int:
        return len(self.pattern)

    # -- per layer, on one TP rank (tp=1: the whole layer) -----------------------------------
    # Each returns (non-expert params, expert params). Norms and the router are replicated over
    # TP; every projection is split (Megatron's column/row parallel linears).
    def mamba_params(self, tp: int = 1) -> tuple[int, int]:
        h, d_inner = self.hidden, self.mamba_heads * self.mamba_head_dim
        conv_dim = d_inner + 2 * self.mamba_groups * self.ssm_state
        in_proj = h * (2 * d_inner + 2 * self.mamba_groups * self.ssm_state + self.mamba_heads)
        split = (in_proj + conv_dim * (self.conv_kernel + 1)  # conv1d weight + bias
                 + 3 * self.mamba_heads  # dt_bias, A_log, D
                 + d_inner  # gated RMSNorm inside the mixer
                 + d_inner * h)  # out_proj
        return split // tp + h, 0

    def attention_params(self, tp: int = 1) -> tuple[int, int]:
        h, hd = self.hidden, self.head_dim
        kv_heads_rank = max(self.kv_heads // tp, 1)  # fewer KV heads than TP ranks are replicated
        q_o = 2 * h * hd * self.heads // tp
        return q_o + 2 * h * hd * kv_heads_rank + h, 0

    def moe_params(self, tp: int = 1, ep: int = 1, etp: int = 1) -> tuple[int, int]:
        h = self.hidden
        router = self.experts * h
        shared = 2 * h * self.shared_ffn // tp  # relu2 FFN: up and down, no gate
        routed = self.experts * 2 * h * self.moe_ffn // (ep * etp)
        return router + shared + h, routed

    def mlp_params(self, tp: int = 1) -> tuple[int, int]:
        return 2 * self.hidden * self.ffn // tp + self.hidden, 0

    def layer_params(self, symbol: str, tp: int = 1, ep: int = 1, etp: int = 1) -> tuple[int, int]:
        if symbol == "M":
            return self.mamba_params(tp)
        if symbol == "*":
            return self.attention_params(tp)
        if symbol == "E":
            return self.moe_params(tp, ep, etp)
        return self.mlp_params(tp)

    def padded_vocab(self, tp: int = 1, divisible_by: int = 128) -> int:
        """Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by * TP."""
        m = divisible_by * tp
        return -(-self.vocab // m) * m

    # -- pipeline stages ---------------------------------------------------------------------
    def stage_patterns(self, pp: int) -> list[str]:
        """Contiguous slices of num_layers/pp layers, as Megatron's MambaStack assigns them."""
        n = self.num_layers // pp
        return [self.pattern[i * n:(i + 1) * n] for i in range(pp)]

    def stage_params(self, stage: int, pp: int = 1, tp: int = 1, ep: int = 1, etp: int = 1,
                     vocab_divisible_by: int = 1) -> tuple[int, int]:
        """(non-expert, expert) parameters held by one rank of pipeline stage `stage`."""
        dense = expert = 0
        for sym in self.stage_patterns(pp)[stage]:
            d, e = self.layer_params(sym, tp, ep, etp)
            dense, expert = dense + d, expert + e
        vocab_rank = self.padded_vocab(tp, vocab_divisible_by) // tp
        if stage == 0:
            dense += vocab_rank * self.hidden  # input embedding
        if stage == pp - 1:
            dense += self.hidden  # final norm
            if not self.tied or pp > 1:  # tied weights are still a separate copy on the last stage
                dense += vocab_rank * self.hidden
        return dense, expert

    def total_params(self) -> int:
        """All parameters of the unsharded model (HF layout: no vocabulary padding)."""
        dense, expert = self.stage_params(0, 1)
        return dense + expert

    def expert_params(self) -> int:
        return self.stage_params(0, 1)[1]
