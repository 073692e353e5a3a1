"""Frozen Megatron model flags against the model's config.json (NemotronH: Mamba + attention + MoE).

Each disagreement is one Finding naming the flag, the config field, both values and what goes
wrong. An absent flag is judged by the value Megatron (radixark miles-main 37f9161) uses instead;
a field absent from config.json by transformers' NemotronHConfig default. Mismatches that change
routing are the silent ones: the checkpoint still loads, but Megatron computes something other than
what SGLang computes in rollout, and train/rollout log-probs drift.
"""

from __future__ import annotations

from typing import Any

from runner.model.finding import Finding
from runner.recipe import args_to_dict

from .shape import layer_pattern

# transformers NemotronHConfig defaults, for fields a config.json may leave out
HF_DEFAULTS = {"routed_scaling_factor": 1.0, "n_group": 1, "topk_group": 1, "norm_topk_prob": True,
               "tie_word_embeddings": False, "n_shared_experts": 1}

DRIFT = "train/rollout log-probs drift"


def is_nemotron_h(cfg: dict[str, Any]) -> bool:
    return cfg.get("model_type") == "nemotron_h" or "NemotronHForCausalLM" in (cfg.get("architectures") or [])


def _hf(cfg: dict[str, Any], key: str) -> tuple[Any, str]:
    """(value, field label) — the label says when transformers' default stands in."""
    if key in cfg:
        return cfg[key], key
    return HF_DEFAULTS.get(key), f"{key} (absent; transformers default)"


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _show(flag: str, a: dict[str, Any], shown_default: str) -> str:
    return f"{flag} {a[flag]}" if flag in a and a[flag] is not True else f"no {flag} ({shown_default})"


def model_findings(argv: list[str], cfg: dict[str, Any]) -> list[Finding]:
    a = args_to_dict(argv)
    out: list[Finding] = []

    def bad(rule: str, flag: str, field: str, expected: Any, actual: Any, message: str,
            severity: str = "error") -> None:
        out.append(Finding(severity, f"model.{rule}", message, flag=flag, field=field, expected=expected,
                           actual=actual))

    pattern = layer_pattern(cfg)
    if not pattern:
        bad("layer_pattern", "--num-layers", "hybrid_override_pattern", None, None,
            "config.json has neither hybrid_override_pattern nor layers_block_type: which layers are Mamba, "
            "attention or MoE is unknown, so layer types are not checked", "warning")
    hidden = _int(cfg.get("hidden_size"))
    heads = _int(cfg.get("num_attention_heads"))
    m_hidden = _int(a.get("--hidden-size"))
    m_heads = _int(a.get("--num-attention-heads"))

    def compare_int(rule: str, flag: str, field: str, expected: Any, default: int | None, default_text: str,
                    consequence: str, severity: str = "error") -> None:
        actual = _int(a[flag]) if flag in a else default
        if expected is None or actual == _int(expected):
            return
        shown = default_text if flag in a or actual is None else f"{default_text}: {actual}"
        bad(rule, flag, field, expected, actual, f"{_show(flag, a, shown)} vs config.json {field} = "
            f"{expected}: {consequence}", severity)

    # -- shapes: a mismatch fails the load or misreads the checkpoint ----------------------------
    n_layers = len(pattern) if pattern else cfg.get("num_hidden_layers")
    field = "hybrid_override_pattern (length)" if pattern else "num_hidden_layers"
    compare_int("num_layers", "--num-layers", field, n_layers, None, "required",
                "Megatron builds a different layer stack from the checkpoint's")
    if pattern and _int(cfg.get("num_hidden_layers")) not in (None, len(pattern)):
        bad("num_layers", "--num-layers", "num_hidden_layers", len(pattern), cfg["num_hidden_layers"],
            f"config.json num_hidden_layers = {cfg['num_hidden_layers']} disagrees with its own "
            f"hybrid_override_pattern ({len(pattern)} layers); transformers uses the pattern", "warning")
    compare_int("hidden_size", "--hidden-size", "hidden_size", hidden, None, "required",
                "every weight has the wrong shape; the checkpoint cannot load")
    has_mlp = "-" in pattern
    ffn_sev = "error" if has_mlp or "--moe-ffn-hidden-size" not in a else "warning"
    compare_int("ffn_hidden_size", "--ffn-hidden-size", "intermediate_size", cfg.get("intermediate_size"),
                4 * m_hidden if m_hidden else None, "Megatron uses 4 x hidden",
                "dense MLP weights (and the default MoE FFN size) have the wrong shape" if ffn_sev == "error"
                else "no dense MLP layer uses it in this pattern, but it disagrees with the checkpoint", ffn_sev)
    compare_int("num_attention_heads", "--num-attention-heads", "num_attention_heads", heads, None, "required",
                "attention projections are split into the wrong heads")
    kv = cfg.get("num_key_value_heads", heads)
    if "--group-query-attention" not in a and kv is not None and heads is not None and int(kv) < int(heads):
        bad("query_groups", "--group-query-attention", "num_key_value_heads", kv, m_heads,
            f"no --group-query-attention: Megatron ignores --num-query-groups and builds {m_heads} K/V heads, "
            f"config.json num_key_value_heads = {kv}; the K/V weights cannot load")
    else:
        compare_int("query_groups", "--num-query-groups", "num_key_value_heads", kv, m_heads,
                    "one group per head", "K/V projections have the wrong shape; the checkpoint cannot load")
    compare_int("kv_channels", "--kv-channels", "head_dim", cfg.get("head_dim"),
                m_hidden // m_heads if m_hidden and m_heads else None, "Megatron uses hidden/heads",
                "query/key/value projections have the wrong shape; the checkpoint cannot load")
    compare_int("vocab_size", "--vocab-size", "vocab_size", cfg.get("vocab_size"), None,
                "Megatron takes the tokenizer's size",
                "embedding and output layer shapes differ from the checkpoint's")

    # -- position embedding, tying, norm, biases ------------------------------------------------
    pos = a.get("--position-embedding-type", "learned_absolute")
    if pos != "none":
        bad("position_embedding", "--position-embedding-type", "(NemotronH: no position embedding)", "none", pos,
            f"{_show('--position-embedding-type', a, 'Megatron uses learned_absolute')}: NemotronH has no "
            f"position embedding; Megatron adds one the checkpoint does not have ({pos})")
    tied, tied_field = _hf(cfg, "tie_word_embeddings")
    untie = "--untie-embeddings-and-output-weights" in a
    if untie == bool(tied):
        bad("tied_embeddings", "--untie-embeddings-and-output-weights", tied_field, not tied, untie,
            f"{'--untie-embeddings-and-output-weights' if untie else 'no --untie-embeddings-and-output-weights'} "
            f"but config.json {tied_field} = {str(bool(tied)).lower()}: "
            + ("the checkpoint's separate lm_head is replaced by the input embedding" if not tied else
               "Megatron builds an output layer the checkpoint does not have"))
    norm = a.get("--normalization", "LayerNorm")
    if norm != "RMSNorm":
        bad("normalization", "--normalization", "(NemotronH: RMSNorm)", "RMSNorm", norm,
            f"{_show('--normalization', a, 'Megatron uses LayerNorm')}: NemotronH normalizes with RMSNorm")
    biased = any(cfg.get(k) for k in ("attention_bias", "mlp_bias", "use_bias"))
    if not biased and "--disable-bias-linear" not in a:
        bad("bias", "--disable-bias-linear", "attention_bias/mlp_bias/use_bias", False, True,
            "no --disable-bias-linear: Megatron adds bias terms the checkpoint does not have (zero at start, "
            "then trained)", "warning")

    out += _moe_findings(a, cfg, pattern)
    return out


def _moe_findings(a: dict[str, Any], cfg: dict[str, Any], pattern: str) -> list[Finding]:
    out: list[Finding] = []
    experts = _int(cfg.get("n_routed_experts")) if "E" in pattern or not pattern else 0
    m_experts = _int(a.get("--num-experts"))

    def bad(rule: str, flag: str, field: str, expected: Any, actual: Any, message: str) -> None:
        out.append(Finding("error", f"model.{rule}", message, flag=flag, field=field, expected=expected,
                           actual=actual))

    if not experts:
        if m_experts:
            bad("num_experts", "--num-experts", "n_routed_experts", 0, m_experts,
                f"--num-experts {m_experts} but config.json has no MoE layer: Megatron builds experts the "
                f"checkpoint does not have")
        return out
    if not m_experts:
        bad("num_experts", "--num-experts", "n_routed_experts", experts, None,
            f"no --num-experts but config.json n_routed_experts = {experts}: Megatron builds dense MLPs where "
            f"the checkpoint has MoE layers")
        return out
    if m_experts != experts:
        bad("num_experts", "--num-experts", "n_routed_experts", experts, m_experts,
            f"--num-experts {m_experts} vs config.json n_routed_experts = {experts}: the expert tensors do not "
            f"match the checkpoint's (load fails or experts are dropped)")

    def cmp_int(rule: str, flag: str, field: str, expected: Any, default: int | None, default_text: str,
                consequence: str) -> None:
        actual = _int(a[flag]) if flag in a else default
        if expected is None or actual == _int(expected):
            return
        shown = default_text if flag in a or actual is None else f"{default_text}: {actual}"
        bad(rule, flag, field, expected, actual,
            f"{_show(flag, a, shown)} vs config.json {field} = {expected}: {consequence}")

    ffn = _int(a.get("--ffn-hidden-size"))
    cmp_int("moe_ffn_hidden_size", "--moe-ffn-hidden-size", "moe_intermediate_size", cfg.get("moe_intermediate_size"),
            ffn, "Megatron uses --ffn-hidden-size", "routed expert weights have the wrong shape")
    shared = cfg.get("moe_shared_expert_intermediate_size")
    if shared is None and cfg.get("n_shared_experts"):
        shared = int(cfg["n_shared_experts"]) * int(cfg.get("moe_intermediate_size") or 0)
    cmp_int("shared_expert", "--moe-shared-expert-intermediate-size", "moe_shared_expert_intermediate_size",
            shared, None, "Megatron builds no shared expert",
            "the shared expert is missing or has the wrong shape")
    topk = cfg.get("num_experts_per_tok")
    cmp_int("topk", "--moe-router-topk", "num_experts_per_tok", topk, 2, "Megatron uses 2",
            f"training routes each token to {_int(a.get('--moe-router-topk', 2))} experts, SGLang to {topk} in "
            f"rollout: {DRIFT}, and R3 replays {topk} indices into a top-{_int(a.get('--moe-router-topk', 2))} "
            f"router")

    # Score function and expert bias: NemotronH's HF gate (and miles' bridge) is DeepSeek-V3 style:
    # sigmoid scores plus an e_score_correction_bias for choosing experts.
    score = a.get("--moe-router-score-function", "softmax")
    if score != "sigmoid":
        bad("score_function", "--moe-router-score-function", "(NemotronH gate: sigmoid)", "sigmoid", score,
            f"{_show('--moe-router-score-function', a, 'Megatron uses softmax')}: NemotronH scores experts with "
            f"a sigmoid; gate weights differ between training and rollout: {DRIFT}")
    if "--moe-router-enable-expert-bias" not in a:
        bad("expert_bias", "--moe-router-enable-expert-bias", "e_score_correction_bias (NemotronH gate)", True,
            False, "no --moe-router-enable-expert-bias: Megatron picks experts without the checkpoint's "
            f"e_score_correction_bias, SGLang with it: different experts in training than in rollout ({DRIFT} "
            f"whenever R3 is off)")
    norm_topk, norm_field = _hf(cfg, "norm_topk_prob")
    if score == "sigmoid" and (_int(topk) or 0) > 1 and not norm_topk:
        bad("norm_topk_prob", "--moe-router-score-function", norm_field, True, False,
            f"config.json {norm_field} = false, but Megatron always renormalizes top-k sigmoid scores: {DRIFT}")

    # The routed scaling factor: the silent one. Without it Megatron scales routed output by 1.0.
    scale, scale_field = _hf(cfg, "routed_scaling_factor")
    m_scale = _float(a.get("--moe-router-topk-scaling-factor")) if "--moe-router-topk-scaling-factor" in a else None
    if _float(scale) is not None and (m_scale if m_scale is not None else 1.0) != _float(scale):
        shown = (f"--moe-router-topk-scaling-factor {a['--moe-router-topk-scaling-factor']}" if m_scale is not None
                 else "no --moe-router-topk-scaling-factor (Megatron scales routed output by 1.0)")
        bad("scaling_factor", "--moe-router-topk-scaling-factor", scale_field, _float(scale), m_scale,
            f"{shown} vs config.json {scale_field} = {scale}: training scales the routed experts' output by "
            f"{m_scale if m_scale is not None else 1.0}, SGLang by {scale} in rollout: {DRIFT} (~0.28 upstream); "
            f"R3 does not fix it")

    # Router groups: config.json `n_group`/`topk_group`. Not `n_groups`, Mamba's SSM group count.
    mamba_groups = cfg.get("n_groups")
    for rule, flag, key in (("router_groups", "--moe-router-num-groups", "n_group"),
                            ("router_group_topk", "--moe-router-group-topk", "topk_group")):
        want, want_field = _hf(cfg, key)
        have = _int(a.get(flag)) if flag in a else None
        # Megatron without the flag does no group-limited routing, which equals one group of all experts.
        if have == _int(want) or (have is None and _int(want) == 1):
            continue
        hint = ""
        if key == "n_group" and mamba_groups is not None and have == _int(mamba_groups):
            hint = f" ({have} is config.json n_groups, the Mamba SSM group count, not the router's n_group)"
        shown = f"{flag} {have}" if have is not None else f"no {flag} (Megatron: no group-limited routing)"
        bad(rule, flag, want_field, want, have, f"{shown} vs config.json {want_field} = {want}{hint}: experts are "
            f"chosen from different groups in training than in rollout: {DRIFT}")
    return out
