"""Parameter counts from config.json, against the published total and transformers' real NemotronH."""

import json
import sys

import pytest
from conftest import importorskip

from runner.model.family import load_family
from runner.paths import recipes_dir

NH = load_family("nemotron_h")  # recipes/lib/families/nemotron_h, loaded by path
ModelShape, layer_pattern = NH.ModelShape, sys.modules[NH.__name__ + ".shape"].layer_pattern

CONFIG = json.loads((recipes_dir() / "nemotron3_nano" / "hf_config.json").read_text())
NANO = ModelShape.from_hf_config(CONFIG)
PUBLISHED_TOTAL = 31_577_937_344  # the model card / safetensors index, buffers excluded


def test_total_matches_the_published_count():
    assert NANO.total_params() == PUBLISHED_TOTAL


def test_pattern_and_layer_counts():
    assert NANO.num_layers == 52
    assert {c: NANO.pattern.count(c) for c in "ME*-"} == {"M": 23, "E": 23, "*": 6, "-": 0}
    assert NANO.expert_params() == 23 * 128 * 2 * 2688 * 1856


def _transformers_count(cfg: dict) -> int:
    torch = importorskip("torch")
    transformers = importorskip("transformers")
    meta = ("architectures", "auto_map", "transformers_version", "torch_dtype")
    keep = {k: v for k, v in cfg.items() if k not in meta}
    with torch.device("meta"):  # shapes only: a 31.6B model costs no memory
        model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**keep))
    return sum(p.numel() for p in model.parameters())


def test_count_equals_transformers_nemotron_h():
    assert NANO.total_params() == _transformers_count(CONFIG)


def test_count_equals_transformers_for_other_shapes():
    """Every layer type (dense MLP '-' included), KV heads = heads. (transformers' NemotronH never ties
    lm_head to the embedding, whatever tie_word_embeddings says, so untied is the case to compare.)"""
    cfg = {**CONFIG, "hidden_size": 96, "hybrid_override_pattern": "M-*EM-E*", "num_attention_heads": 4,
           "num_key_value_heads": 4, "head_dim": 24, "intermediate_size": 160, "moe_intermediate_size": 48,
           "moe_shared_expert_intermediate_size": 80, "n_routed_experts": 8, "num_experts_per_tok": 2,
           "mamba_num_heads": 6, "mamba_head_dim": 16, "n_groups": 2, "ssm_state_size": 16, "vocab_size": 1000}
    assert ModelShape.from_hf_config(cfg).total_params() == _transformers_count(cfg)


def test_layers_block_type_is_read_like_the_pattern():
    names = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}
    cfg = {k: v for k, v in CONFIG.items() if k != "hybrid_override_pattern"}
    cfg["layers_block_type"] = [names[c] for c in CONFIG["hybrid_override_pattern"]]
    assert layer_pattern(cfg) == CONFIG["hybrid_override_pattern"]


def test_shards_add_up_to_the_whole():
    # PP: stages partition the layers; embedding on the first, output layer on the last.
    for pp in (1, 2, 4):
        assert sum(sum(NANO.stage_params(s, pp)) for s in range(pp)) == PUBLISHED_TOTAL
    # EP: the experts split evenly over EP ranks; TP shards dense weights (norms, router replicated).
    assert NANO.stage_params(0, 1, ep=8)[1] * 8 == NANO.expert_params()
    dense1 = NANO.stage_params(0, 1)[0]
    dense2 = NANO.stage_params(0, 1, tp=2)[0]
    assert dense1 / 2 < dense2 < dense1 / 2 + 30e6  # replicated: norms + 23 routers + KV heads


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    # 2 KV heads over TP4: each rank holds one (Megatron replicates), not half a head.
    att4 = NANO.attention_params(tp=4)[0]
    assert att4 == 2 * 2688 * 128 * 32 // 4 + 2 * 2688 * 128 * 1 + 2688


def test_pipeline_stages_take_contiguous_slices():
    halves = NANO.stage_patterns(2)
    assert "".join(halves) == NANO.pattern and [len(h) for h in halves] == [26, 26]
    assert [h.count("E") for h in halves] == [11, 12]  # unequal MoE layers: the planner takes the heavier


def test_not_a_nemotron_h_config():
    with pytest.raises(ValueError, match="hybrid_override_pattern"):
        ModelShape.from_hf_config({"model_type": "llama", "hidden_size": 8})
