"""What reaches the model when miles builds it in bridge mode (`--megatron-to-hf-mode bridge`).

Follows radixark/miles 78527b9102b3a5f15891128cbec3ac6c2dc4089e,
miles/backends/megatron_utils/model_provider.py: in bridge mode (:163-169) the model is
`AutoBridge.from_hf_pretrained(hf_checkpoint, trust_remote_code=True).to_megatron_provider(load_weights=False)`,
built from config.json; `_apply_bridge_runtime_config` (:27-96) then copies only the fields in
`COPIED_FLAGS` below from the parsed arguments (the last four only when set), and `finalize()`.
Every other model flag of model_args.txt (shape, router: top-k, scaling factor, score function,
groups, expert bias, pre-softmax, load-balancing type) does not reach the model; the provider has
config.json's values, or the bridge's own defaults where config.json says nothing.

What the built provider holds for the two flags whose value differs (run on CPU against
NVIDIA-NeMo/Megatron-Bridge 73eb4b27 and 98dd9f95; the image's bridge is another commit, which only
the `model` preflight inside the image can read): `moe_router_pre_softmax` False with both;
`moe_router_load_balancing_type` `aux_loss` with 98dd9f95 (with miles' plugin), the recipe's
`seq_aux_loss` with 73eb4b27.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runner.model.finding import Finding
from runner.recipe import args_to_dict

# Megatron flag -> the provider field _apply_bridge_runtime_config sets from it (model_provider.py:40-96)
COPIED_FLAGS = {
    "--tensor-model-parallel-size": "tensor_model_parallel_size",
    "--pipeline-model-parallel-size": "pipeline_model_parallel_size",
    "--expert-model-parallel-size": "expert_model_parallel_size",
    "--expert-tensor-parallel-size": "expert_tensor_parallel_size",
    "--sequence-parallel": "sequence_parallel",
    "--context-parallel-size": "context_parallel_size",
    "--calculate-per-token-loss": "calculate_per_token_loss",
    "--variable-seq-lengths": "variable_seq_lengths",
    "--attention-softmax-in-fp32": "attention_softmax_in_fp32",
    "--fp32-residual-connection": "fp32_residual_connection",
    "--deterministic-mode": "deterministic_mode",
    "--recompute-granularity": "recompute_granularity",
    "--recompute-method": "recompute_method",
    "--recompute-num-layers": "recompute_num_layers",
    "--recompute-modules": "recompute_modules",
    "--cpu-offloading-num-layers": "cpu_offloading_num_layers",
    "--distribute-saved-activations": "distribute_saved_activations",
    "--tp-comm-overlap": "tp_comm_overlap",
    "--fp8-format": "fp8",  # Megatron's dest for --fp8-format is `fp8`
    "--fp8-recipe": "fp8_recipe",
    "--attention-backend": "attention_backend",
    "--moe-token-dispatcher-type": "moe_token_dispatcher_type",
    # only when set (argument default None)
    "--decoder-first-pipeline-num-layers": "num_layers_in_first_pipeline_stage",
    "--decoder-last-pipeline-num-layers": "num_layers_in_last_pipeline_stage",
    "--moe-router-bias-update-rate": "moe_router_bias_update_rate",
    "--moe-aux-loss-coeff": "moe_aux_loss_coeff",
    "--dsa-attention-backend": "dsa_attention_backend",  # when the provider has that field
}
WHERE = "miles 78527b91 model_provider.py:27-96,163-169"


def is_bridge_mode(argv: list[str]) -> bool:
    return args_to_dict(argv).get("--megatron-to-hf-mode") == "bridge"


def not_reaching(model_args: list[str]) -> list[str]:
    """The flags of model_args.txt the bridge-built model does not take, in file order."""
    return [w for w in dict.fromkeys(model_args) if w.startswith("--") and w not in COPIED_FLAGS]


def bridge_notes(argv: list[str], model_args: list[str]) -> list[Finding]:
    """Notes: what of the model args reaches the model, and the flags whose value the model does not share."""
    a = args_to_dict(argv)
    dropped = not_reaching(model_args)
    router = [f for f in dropped if f.startswith("--moe-router-") or f == "--num-experts"]
    out = [Finding("note", "bridge.model_from_config",
                   f"bridge mode: miles builds the model from config.json ({WHERE}); of the model args only "
                   f"runtime fields (parallel sizes, SP, recompute, deterministic mode, bias update rate, aux "
                   f"loss coefficient, ...) are copied onto it. {len(dropped)} model flag(s) do not reach the "
                   f"model" + (f", among them the router's: {' '.join(router)}" if router else "") +
                   "; the model rules therefore compare config.json, what the model gets, with what the recipe "
                   "claims", flag="--megatron-to-hf-mode", actual="bridge")]
    if "--moe-router-pre-softmax" in a:
        sigmoid = a.get("--moe-router-score-function") == "sigmoid"
        out.append(Finding("note", "bridge.pre_softmax",
                           "--moe-router-pre-softmax does not reach the model: the bridge-built provider has "
                           "moe_router_pre_softmax False (bridges 73eb4b27 and 98dd9f95)" +
                           ("; with sigmoid scores it has no effect either way" if sigmoid else ""),
                           flag="--moe-router-pre-softmax", expected=True, actual=False))
    lb = a.get("--moe-router-load-balancing-type")
    if isinstance(lb, str) and lb != "aux_loss":
        coeff = a.get("--moe-aux-loss-coeff")
        zero = coeff is None or _is_zero(coeff)
        out.append(Finding("note", "bridge.load_balancing",
                           f"--moe-router-load-balancing-type {lb} does not reach the model: the bridge sets it "
                           f"(bridge 98dd9f95 builds aux_loss, 73eb4b27 {lb}; the `model` preflight reads the "
                           "image's)" + ("; the aux loss coefficient is 0, so no load-balancing loss either way"
                                         if zero else f"; --moe-aux-loss-coeff {coeff} is copied onto the model"),
                           flag="--moe-router-load-balancing-type", expected=lb, actual="aux_loss (98dd9f95)"))
    return out


def _is_zero(v: Any) -> bool:
    try:
        return float(v) == 0.0
    except (TypeError, ValueError):
        return False


_NOT_REACHING = ("; bridge mode: this flag does not reach the model, which is built from config.json, so the "
                 "recipe claims a value the model does not have")


def restate_for_bridge(findings: list[Finding], argv: list[str], cfg: dict[str, Any] | None) -> list[Finding]:
    """The model rules' findings as bridge mode makes them true: the model has config.json's values."""
    out = []
    for f in findings:
        if f.rule == "model.scaling_factor":
            out.append(replace(f, message=(
                f"bridge mode: the model takes config.json {f.field} = {f.expected} (the flag "
                f"--moe-router-topk-scaling-factor does not reach it), but the recipe claims "
                f"{f.actual if f.actual is not None else 'none (1.0)'}: the recipe's model args say another "
                "factor than the model trains with; fix model_args.txt")))
        elif f.rule.startswith("model.") and f.flag and f.flag not in COPIED_FLAGS:
            out.append(replace(f, message=f.message + _NOT_REACHING))
        else:
            out.append(f)
    a = args_to_dict(argv)
    if cfg is not None and not any(f.rule == "model.scaling_factor" for f in findings) \
            and "routed_scaling_factor" in cfg:
        flag = a.get("--moe-router-topk-scaling-factor")
        out.append(Finding("note", "model.scaling_factor",
                           f"bridge mode: the model's routed scaling factor is config.json routed_scaling_factor "
                           f"= {cfg['routed_scaling_factor']}, which the recipe claims too "
                           f"(--moe-router-topk-scaling-factor {flag}); the command-line flag itself does not "
                           "reach the model", flag="--moe-router-topk-scaling-factor",
                           field="routed_scaling_factor", expected=cfg["routed_scaling_factor"], actual=flag))
    return out
