"""The recipe's two numerical claims, shown on the real transformers NemotronH code with the tiny model.

1. The router scale: the same weights run with `routed_scaling_factor` 1.0 instead of 2.5 move token
   log-probs far above numerical noise; and a config that omits the field silently gets 1.0.
2. Rollout routing replay (R3): forcing the experts recorded in one forward brings a second forward,
   whose router differs slightly, back to numerical noise; free routing does not. Replay does not
   fix a wrong scale.

Numbers are printed (pytest -s) and asserted against the measured noise floor, never against the
30B's 0.28. Measured on the committed weights (2-core CPU, fp32, one thread, 32 problems = 1280
token-router pairs): noise floor (batched vs one-sequence forwards) 1.17e-7 mean, 4.8e-7 max;
router scale 1.0 vs 2.5: 1.40e-2 mean, 6.4e-2 max (1.2e5 x noise); perturbed expert bias (std 0.02):
31% of routes change, free routing 5.4e-3 mean, replayed exactly 0; perturbed router weights
(std 1e-3): 2% of routes change, free 8.2e-4, replayed 6.3e-5 (the weights still follow the
perturbed logits); scale 1.0 with the 2.5 run's routes replayed: 1.37e-2, i.e. replay fixes nothing.
In the trainer's setting (routes recorded during generation, forced in a full forward): 100% of
routes line up, and replayed train log-probs match the generating engine's to 1.3e-7 mean, 1.2e-6 max.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import importorskip, load_tiny_module

torch = importorskip("torch")
transformers = importorskip("transformers")

TINY = Path(__file__).resolve().parent.parent / "recipes" / "nemotron3_nano_tiny"
MODEL = TINY / "inputs" / "model"
DATA = TINY / "inputs" / "data" / "arithmetic.jsonl"


_load = load_tiny_module


rr = _load("routing_replay")
bridge = _load("bridge")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one fixed reduction order: reruns are bitwise equal
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch():
    """32 problems with their correct answers and EOS: the tokens whose log-probs we compare."""
    tok = transformers.AutoTokenizer.from_pretrained(MODEL)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:32]]
    enc = tok([r["prompt"] + r["label"] + tok.eos_token for r in rows], return_tensors="pt", padding=True)
    return enc.input_ids, enc.attention_mask


def load_model(**overrides):
    return transformers.AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, **overrides).eval()


@pytest.fixture(scope="module")
def model():
    return load_model()


def token_logps(model, input_ids, attention_mask):
    """Log-prob of every real next token: (values at real positions,) as a flat tensor."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    real = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    return lp[real]


def drift(a, b) -> tuple[float, float]:
    d = (a - b).abs()
    return d.mean().item(), d.max().item()


@pytest.fixture(scope="module")
def reference(model, batch):
    return token_logps(model, *batch)


@pytest.fixture(scope="module")
def noise_floor(model, batch, reference):
    """Numerical noise of this stack: one batched forward vs the same sequences one at a time."""
    ids, mask = batch
    singles = []
    for i in range(ids.shape[0]):
        singles.append(token_logps(model, ids[i:i + 1], mask[i:i + 1]))
    mean, top = drift(reference, torch.cat(singles))
    print(f"\nnoise floor (batched vs one sequence at a time): mean {mean:.3g}, max {top:.3g}")
    assert top < 1e-5, "batched and single forwards should differ only by fp32 rounding"
    # Where both happen to agree bit for bit, fp32's epsilon stands in as the floor.
    return max(mean, torch.finfo(torch.float32).eps)


def perturbed(model, what: str, scale: float, seed: int = 0):
    """A copy of `model` whose routers differ slightly: the expert bias or the router weights."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    for router in rr.moe_routers(other).values():
        t = router.e_score_correction_bias if what == "bias" else router.weight
        t.data.add_(torch.randn(t.shape, generator=g) * scale)
    return other


# ---- claim 1: the router scale ---------------------------------------------------------------------

def test_committed_model_routes_at_2_5(model):
    assert model.config.routed_scaling_factor == 2.5
    assert set(bridge.gate_scales(model)) == {2.5}
    assert len(bridge.gate_scales(model)) == 4  # "MEMEM*EME": four MoE layers


def test_router_scale_1_0_moves_logprobs_far_above_noise(batch, reference, noise_floor):
    wrong = load_model(routed_scaling_factor=1.0)
    assert set(bridge.gate_scales(wrong)) == {1.0}
    mean, top = drift(reference, token_logps(wrong, *batch))
    print(f"router scale 1.0 vs 2.5, same weights: mean |dlogp| {mean:.4g}, max {top:.4g} "
          f"({mean / noise_floor:.3g} x the noise floor)")
    assert mean > 1e3 * noise_floor
    assert mean > 1e-3


def test_config_without_routed_scaling_factor_silently_gets_1_0(batch, reference):
    raw = json.loads((MODEL / "config.json").read_text())
    del raw["routed_scaling_factor"]
    cfg = transformers.NemotronHConfig(**{k: v for k, v in raw.items() if k != "architectures"})
    assert cfg.routed_scaling_factor == 1.0  # no error, no warning: the default

    omitted = transformers.AutoModelForCausalLM.from_pretrained(MODEL, config=cfg, dtype=torch.float32).eval()
    explicit_1 = load_model(routed_scaling_factor=1.0)
    got = token_logps(omitted, *batch)
    assert torch.equal(got, token_logps(explicit_1, *batch)), "an omitted scale must behave exactly as 1.0"
    assert drift(reference, got)[0] > 1e-3

    # The trap deepens: fixing the config after construction changes nothing, each router kept 1.0.
    omitted.config.routed_scaling_factor = 2.5
    assert set(bridge.gate_scales(omitted)) == {1.0}
    assert torch.equal(token_logps(omitted, *batch), got)

    # What catches it: the model flags vs the effective config (the trainer runs this check at start).
    problems = bridge.mismatches(bridge.read_flags(TINY / "model_args.txt"), raw)
    assert len(problems) == 1
    assert "routed_scaling_factor" in problems[0] and "absent from config.json" in problems[0]


# ---- claim 2: rollout routing replay ----------------------------------------------------------------

def test_replay_of_own_routes_is_bitwise_identity(model, batch, reference):
    replay = rr.RoutingReplay(model)
    with replay.recording() as routes:
        recorded = token_logps(model, *batch)
    assert all(len(calls) == 1 for calls in routes.values()) and len(routes) == 4
    with replay.replaying(routes):
        replayed = token_logps(model, *batch)
    assert torch.equal(recorded, reference) and torch.equal(replayed, reference)


@pytest.mark.parametrize("what,scale", [("bias", 0.02), ("weight", 1e-3)])
def test_replay_returns_a_slightly_different_router_to_noise(model, batch, reference, noise_floor, what, scale):
    """Rollout engine = `model`; trainer = the same weights with a slightly different router."""
    with rr.RoutingReplay(model).recording() as rollout_routes:
        token_logps(model, *batch)
    trainer = perturbed(model, what, scale)
    replay = rr.RoutingReplay(trainer)
    with replay.recording() as free_routes:
        free = token_logps(trainer, *batch)
    changed, total = rr.changed_routes(rollout_routes, free_routes)
    with replay.replaying(rollout_routes):
        forced = token_logps(trainer, *batch)
    free_mean, free_max = drift(reference, free)
    forced_mean, forced_max = drift(reference, forced)
    print(f"perturbed router {what} (std {scale:g}): {changed}/{total} token routes change; "
          f"free routing mean {free_mean:.3g} max {free_max:.3g}; replayed mean {forced_mean:.3g} "
          f"max {forced_max:.3g}")
    assert changed > 0, "the perturbation must change some routes, or the test shows nothing"
    assert free_mean > 1e3 * noise_floor
    if what == "bias":
        # The bias only chooses experts; with the choice forced, the computation is the rollout's.
        assert forced_mean <= 10 * noise_floor
    else:
        # The router's own logits still set the gate weights: replay removes the flips, not that.
        assert forced_mean < free_mean / 5


def test_replay_does_not_fix_a_wrong_scale(model, batch, reference, noise_floor):
    with rr.RoutingReplay(model).recording() as rollout_routes:
        token_logps(model, *batch)
    wrong = load_model(routed_scaling_factor=1.0)
    with rr.RoutingReplay(wrong).replaying(rollout_routes):
        forced = token_logps(wrong, *batch)
    mean, top = drift(reference, forced)
    print(f"router scale 1.0 with the 2.5 rollout's routes replayed: mean {mean:.4g}, max {top:.4g}")
    assert mean > 1e3 * noise_floor


def test_replay_refuses_routes_of_other_tokens(model, batch):
    ids, mask = batch
    replay = rr.RoutingReplay(model)
    with replay.recording() as routes:
        token_logps(model, ids[:4], mask[:4])
    with pytest.raises(RuntimeError, match="do not fit"), replay.replaying(routes):
        token_logps(model, ids, mask)
    with pytest.raises(RuntimeError, match="only 1 recorded"), replay.replaying(routes):
        token_logps(model, ids[:4], mask[:4])
        token_logps(model, ids[:4], mask[:4])


# ---- replay in the trainer: routes recorded during generation, forced in the training forward ----------

def test_generation_routes_line_up_with_the_training_forward(model):
    """The trainer records routes while generating (one forward for the prompts, then one per token)
    and forces them in one full forward. If positions were misaligned, the forced experts would
    disagree with the full forward's own choice almost everywhere; aligned, only at near-ties."""
    tok = transformers.AutoTokenizer.from_pretrained(MODEL)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:16]]
    enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    replay = rr.RoutingReplay(model)
    torch.manual_seed(0)
    with torch.no_grad(), replay.recording() as recorded:
        out = model.generate(**enc, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=4, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    batch, prompt_len = enc.input_ids.shape
    full = out.sequences  # prompts + 4 sampled tokens (no early stop: post-EOS positions are pads)
    routes = rr.routes_from_generation(recorded, batch, prompt_len)
    assert routes.shape[:3] == (batch, full.shape[1] - 1, 4)
    routes = rr.fit_positions(routes, full.shape[1])
    assert bool((routes[:, -1] == -1).all())  # the last sampled token was never fed: no route

    mask = torch.ones_like(full)
    mask[:, :prompt_len] = enc.attention_mask
    names = list(replay.routers)
    with replay.recording() as free:
        token_logps(model, full, mask)
    free_routes = torch.stack([free[n][0].view(batch, full.shape[1], -1) for n in names], dim=2)
    known = routes[:, :-1].sort(-1).values
    agree = (known == free_routes[:, :-1].sort(-1).values).all(-1).float().mean().item()
    print(f"generation routes vs full-forward routes: {agree:.4%} of token-router pairs agree")
    assert agree > 0.99

    # Replayed full forward vs the generating engine's own log-probs of the sampled tokens
    with torch.no_grad(), replay.replaying(rr.as_calls(routes, names)):
        logits = model(input_ids=full, attention_mask=mask).logits.float()
    sampled = full[:, prompt_len:]
    train_lp = torch.log_softmax(logits[:, prompt_len - 1:-1], -1).gather(-1, sampled[..., None]).squeeze(-1)
    gen_lp = torch.log_softmax(torch.stack(out.logits, 1).float(), -1).gather(-1, sampled[..., None]).squeeze(-1)
    mean, top = drift(train_lp, gen_lp)
    print(f"replayed training forward vs generation log-probs: mean {mean:.3g}, max {top:.3g}")
    assert top < 1e-5
