"""Rollout routing replay (R3) on transformers' NemotronH: record each MoE router's top-k experts, force them later.

The seam is `NemotronHTopkRouter` (`model.layers[i].mixer.gate`): its forward returns
`(router_logits, topk_weights, topk_indices)` and `NemotronHMoE` hands the last two to the experts.
A forward hook on every router either records `topk_indices` (one entry per call, in call order) or
replaces the router's choice with recorded indices. Replay keeps what R3 keeps: the experts are
forced, the gate weights are recomputed from *this* router's own logits at those experts
(sigmoid scores, normalised over the k if `norm_topk_prob`, times the router's own
`routed_scaling_factor`). So replay removes routing divergence, and cannot fix a wrong scale.
A recorded row with a negative index means "no record": that token keeps its own choice.

    replay = RoutingReplay(model)
    with replay.recording() as routes:       # routes: {router name: [indices of call 0, 1, ...]}
        model(**batch)
    with replay.replaying(routes):
        model(**batch)                       # same experts as the recorded forward
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

Routes = dict[str, list[torch.Tensor]]


def moe_routers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every NemotronH MoE router of the model, by module name (in layer order)."""
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHTopkRouter

    found = {name: m for name, m in model.named_modules() if isinstance(m, NemotronHTopkRouter)}
    if not found:
        raise ValueError("model has no NemotronHTopkRouter: not a NemotronH MoE model")
    return found


def replayed_weights(router: torch.nn.Module, router_logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gate weights of the forced experts, from this router's own logits and settings."""
    weights = router_logits.float().sigmoid().gather(1, indices)
    if router.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * router.routed_scaling_factor


class RoutingReplay:
    def __init__(self, model: torch.nn.Module):
        self.routers = moe_routers(model)

    @contextmanager
    def recording(self) -> Iterator[Routes]:
        routes: Routes = {name: [] for name in self.routers}

        def hook_for(name: str):
            def hook(module, args, output):
                routes[name].append(output[2].detach().clone())
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.routers.items()]
        try:
            yield routes
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def replaying(self, routes: Routes) -> Iterator[None]:
        """Force recorded experts, call by call; a call beyond the recording is an error. (Activation
        checkpointing would rerun the forward during backward, outside this context: keep it off.)"""
        missing = sorted(set(self.routers) - set(routes))
        if missing:
            raise ValueError(f"no recorded routes for routers: {', '.join(missing)}")
        cursor = dict.fromkeys(self.routers, 0)

        def hook_for(name: str):
            def hook(module, args, output):
                calls = routes[name]
                if cursor[name] >= len(calls):
                    raise RuntimeError(f"{name}: replay asked for call {cursor[name]}, only {len(calls)} recorded")
                forced = calls[cursor[name]]
                cursor[name] += 1
                router_logits, _, chosen = output
                if forced.shape != chosen.shape:
                    raise RuntimeError(f"{name}: recorded routes {tuple(forced.shape)} do not fit this call's "
                                       f"{tuple(chosen.shape)} (different tokens?)")
                forced = forced.to(chosen.device)
                unknown = (forced < 0).any(dim=-1)  # no record for this token: keep its own choice
                if bool(unknown.any()):
                    forced = torch.where(unknown[:, None], chosen, forced)
                return router_logits, replayed_weights(module, router_logits, forced), forced
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.routers.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def routes_from_generation(recorded: Routes, batch: int, prompt_len: int) -> torch.Tensor:
    """Per-token routes of a `generate` call as one (batch, positions, routers, k) tensor.

    generate runs one forward over the (left-padded) prompts, then one per new token but the last:
    positions 0..prompt_len-1 come from the first call, position prompt_len+j-1 from call j.
    The last sampled token was never fed to the model, so it has no route.
    """
    per_router = []
    for calls in recorded.values():  # router order = the model's layer order
        first = calls[0].view(batch, prompt_len, -1)
        steps = [c.view(batch, 1, -1) for c in calls[1:]]
        per_router.append(torch.cat([first, *steps], dim=1))
    return torch.stack(per_router, dim=2)


def fit_positions(routes: torch.Tensor, length: int) -> torch.Tensor:
    """Routes for the first `length` positions; positions never routed are -1 (replay keeps their choice)."""
    if routes.shape[1] >= length:
        return routes[:, :length]
    gap = routes.new_full((routes.shape[0], length - routes.shape[1], *routes.shape[2:]), -1)
    return torch.cat([routes, gap], dim=1)


def as_calls(routes: torch.Tensor, names: list[str]) -> Routes:
    """A (batch, positions, routers, k) tensor as the one-forward recording `replaying` takes."""
    b, t, n, k = routes.shape
    if n != len(names):
        raise ValueError(f"routes hold {n} routers, the model has {len(names)}")
    return {name: [routes[:, :, i].reshape(b * t, k)] for i, name in enumerate(names)}


def changed_routes(a: Routes, b: Routes) -> tuple[int, int]:
    """(token-router pairs whose expert *set* differs, all pairs) between two recordings of one batch."""
    changed = total = 0
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            xs, ys = x.sort(dim=-1).values, y.sort(dim=-1).values
            changed += int((xs != ys).any(dim=-1).sum())
            total += x.shape[0]
    return changed, total
