"""Known traps of a miles train argv (R3, pause mode, the KL reference, routers, rollout log-probs).

miles 78527b91 (v0.1.0) behaviour, each rule saying what goes wrong; `recipe lint` reports them in
its `recipe` group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.model.finding import Finding
from runner.recipe import args_to_dict


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def recipe_findings(argv: list[str], moe: bool) -> list[Finding]:
    a = args_to_dict(argv)
    out: list[Finding] = []
    r3 = "--use-rollout-routing-replay" in a
    if moe and not r3:
        out.append(Finding("error", "recipe.r3", "MoE model without --use-rollout-routing-replay: training "
                           "re-routes every token on its own, so train and rollout log-probs drift (~0.28 "
                           "upstream without R3, 0.013-0.014 with it)", flag="--use-rollout-routing-replay"))
    if r3:
        mode = a.get("--pause-generation-mode")
        in_flight = "--partial-rollout" in a or "--fully-async" in a or "--colocate" not in a
        if mode == "retract":
            out.append(Finding("warning", "recipe.pause_mode", "R3 with --pause-generation-mode retract: "
                               "retracted requests are recomputed after the weight update and can pair log-probs "
                               "with recomputed routes; use abort or in_place",
                               flag="--pause-generation-mode", expected="abort|in_place", actual="retract"))
        elif mode is None:
            sev = "warning" if in_flight else "note"
            why = ("requests can be in flight at a weight update here" if in_flight else
                   "harmless while rollout is colocated and synchronous (nothing in flight at a weight update)")
            out.append(Finding(sev, "recipe.pause_mode", f"R3 with the default --pause-generation-mode "
                               f"(retract in miles v0.1.0): {why}; set abort or in_place explicitly",
                               flag="--pause-generation-mode", expected="abort|in_place", actual=None))
    if a.get("--megatron-to-hf-mode") == "bridge":
        hf, ref = a.get("--hf-checkpoint"), a.get("--ref-load")
        if isinstance(ref, str) and isinstance(hf, str) and Path(hf) != Path(ref):
            out.append(Finding("warning", "recipe.ref_load", f"bridge mode with --hf-checkpoint {hf} but "
                               f"--ref-load {ref}: the KL reference is not the policy's starting point",
                               flag="--ref-load", expected=hf, actual=ref))
    if "--use-kl-loss" in a and _num(a.get("--kl-loss-coef", 0.0)) == 0.0:
        out.append(Finding("note", "recipe.kl_zero", "--use-kl-loss with --kl-loss-coef 0: the KL term adds "
                           "nothing, but the reference model is still loaded and run every step",
                           flag="--kl-loss-coef", actual=a.get("--kl-loss-coef", "0 (default)")))
    if "--use-miles-router" in a:
        # miles 78527b91: miles/ray/rollout/router_manager.py starts MilesRouter for this flag, else the
        # sgl-router; upstream's own launcher script there passes only --use-rollout-routing-replay.
        out.append(Finding("note", "recipe.miles_router", "--use-miles-router puts miles' Python HTTP router "
                           "(MilesRouter) in front of the SGLang engines instead of the Rust sgl-router; it is "
                           "not routing replay (that is --use-rollout-routing-replay), and upstream's own "
                           "launcher at miles v0.1.0 no longer passes it", flag="--use-miles-router"))
    if "--use-rollout-logprobs" in a:
        out.append(Finding("warning", "recipe.rollout_logprobs", "--use-rollout-logprobs: training uses "
                           "SGLang's log-probs, so train/train_rollout_logprob_abs_diff is 0 by construction and "
                           "the train/rollout acceptance check measures nothing", flag="--use-rollout-logprobs"))
    return out
