"""The layout planner: Megatron's rules for this model, and the per-GPU memory model's calibration."""

import json
from dataclasses import replace

import pytest

from runner.errors import UsageError
from runner.frameworks.miles import ADAPTER as MILES
from runner.model.family import load_family
from runner.model.memory import GIB
from runner.model.parallel import Architecture, Layout, layout_errors, layout_warnings
from runner.plan.render import render_plan
from runner.planner import family_architecture, format_table, plan_layouts
from runner.recipe import load_recipe

RECIPE = load_recipe("nemotron3_nano")
ARGV = render_plan(RECIPE).argv
TP4_EP2 = Layout(tp=4, pp=1, cp=1, ep=2, etp=1, sp=True)


@pytest.fixture(scope="module")
def on8():
    return plan_layouts(RECIPE, 8, argv=ARGV)


@pytest.fixture(scope="module")
def on16():
    return plan_layouts(RECIPE, 16, argv=ARGV)


@pytest.mark.parametrize("cell", list(RECIPE.cells))
def test_six_verified_cells_are_valid_and_fit_on_8_h200(on8, cell):
    row = on8.row(RECIPE.cell(cell).layout)
    assert row is not None and cell in row.cells
    assert row.valid, row.errors
    assert row.fits, row.memory
    assert row.memory.peak < row.memory.capacity


def test_tp4_ep2_on_8_gpus_is_legal_but_flagged_over_memory(on8):
    # Megatron accepts it (2 query groups divide TP4: KV heads are replicated); it ran out of memory.
    row = on8.row(TP4_EP2)
    assert row is not None and row.valid, row and row.errors
    assert not row.fits
    assert row.memory.peak > on8.capacity_gib
    # the training state alone is most of the card: 14.7B expert params/rank x (2 + 4) B + Adam shard
    assert row.memory.weights + row.memory.grads + row.memory.optimizer > 125


def test_table_for_8_gpus_shows_cells_and_flags_tp4_ep2(on8):
    table = format_table(on8)
    assert "calibration:" in table and "139.8 GiB" in table
    for cell in RECIPE.cells:
        assert cell in table
    line = next(ln for ln in table.splitlines() if ln.startswith("TP4 PP1 CP1/2 EP2 ETP1 +SP"))
    assert "OVER by" in line


def test_16_gpus_over_two_nodes(on16):
    assert (on16.nodes, on16.gpus) == (2, 16)
    for cell in RECIPE.cells:
        row = on16.row(RECIPE.cell(cell).layout)
        assert row.valid and row.fits
    # twice the data-parallel ranks halve the Adam shard of the same layout
    default = RECIPE.cell(None).layout
    assert on16.row(default).memory.optimizer == pytest.approx(plan_layouts(RECIPE, 8, argv=ARGV).row(
        default).memory.optimizer / 2, rel=0.01)
    # EP16 becomes possible; TP never spans nodes
    assert on16.row(Layout(1, 1, 1, 16, 1, False)).fits
    assert all(r.layout.tp <= 8 for r in on16.rows)
    json.dumps(on16.as_dict())  # serializable


def test_sglang_weights_match_the_known_59_gb(on8):
    assert 2 * on8.total_params / GIB == pytest.approx(58.8, abs=0.1)
    assert on8.total_params == 31_577_937_344


def test_memory_follows_the_argv(on8):
    """Keeping SGLang's weights resident during training (offload level kv_cache only) adds ~59 GiB."""
    kept = plan_layouts(RECIPE, 8, argv=[*ARGV, "--offload-rollout-level", "kv_cache"])
    default = RECIPE.cell(None).layout
    base, more = on8.row(default).memory, kept.row(default).memory
    assert more.rollout_paused - base.rollout_paused == pytest.approx(58.8, abs=0.1)
    assert not kept.row(default).fits
    # optimizer on the CPU: no Adam state on the GPU
    cpu = plan_layouts(RECIPE, 8, argv=[*ARGV, "--optimizer-cpu-offload"])
    assert cpu.row(default).memory.optimizer == 0
    assert cpu.row(TP4_EP2).fits


def test_settings_read_from_the_rendered_argv():
    s = MILES.memory_settings(ARGV)
    assert (s.rollout_mem_fraction, s.colocate, s.offload_train, s.fp32_grads, s.distributed_optimizer,
            s.full_recompute, s.gpus_per_engine) == (0.7, True, True, True, True, True, 1)


def test_pipeline_memory_uses_the_heavier_stage(on8):
    row = on8.row(Layout(1, 2, 1, 4, 1, False))
    assert row.memory.stage == 1  # 12 MoE layers in the second half of the pattern, 11 in the first


@pytest.mark.parametrize("gpus,nodes", [(8, 3), (0, 1)])
def test_bad_gpu_counts_are_usage_errors(gpus, nodes):
    with pytest.raises(UsageError, match="--gpus"):
        plan_layouts(RECIPE, gpus, nodes, argv=ARGV)


# -- the family's own rules (recipes/lib/families/nemotron_h/parallel.py) ---------------------------
NH = load_family("nemotron_h")
CFG = json.loads((RECIPE.dir / "hf_config.json").read_text())
NANO = family_architecture(NH, RECIPE.model_args(), CFG)


def test_hybrid_rules_come_from_config():
    assert NANO.moe_ffn_hidden_size == 1856
    assert NANO.family_rules is not None and NANO.family_rules(Layout(16, 1, 1, 1, 1, True))
    assert Architecture.from_model_args(RECIPE.model_args()).family_rules is None


def test_query_groups_may_divide_tp_but_not_the_reverse_mismatch():
    assert layout_errors(NANO, TP4_EP2, 8) == []
    odd = replace(NANO, num_query_groups=3, num_attention_heads=48)
    assert any("neither a multiple nor a divisor of TP=4" in e for e in layout_errors(odd, TP4_EP2, 8))


def test_group_query_attention_flag_decides_the_groups():
    args = [a for a in RECIPE.model_args() if a != "--group-query-attention"]
    assert Architecture.from_model_args(args).num_query_groups == 32


@pytest.mark.parametrize("arch,layout,needle", [
    (NANO, Layout(16, 1, 1, 1, 1, True), "8 Mamba groups (n_groups) are not divisible by TP=16"),
    (family_architecture(NH, RECIPE.model_args(), {**CFG, "mamba_num_heads": 12, "n_groups": 6}),
     Layout(2, 1, 2, 1, 1, True), "the 3 Mamba groups per TP rank are not divisible by CP=2"),
    (family_architecture(NH, RECIPE.model_args(), {**CFG, "mamba_num_heads": 12, "n_groups": 6}),
     Layout(1, 1, 8, 1, 1, False),
     "12 Mamba heads are not divisible by TP*CP = 8"),
    (replace(NANO, moe_ffn_hidden_size=1856), Layout(1, 1, 1, 1, 128, False), "not divisible by ETP=128"),
])
def test_mamba_and_expert_tensor_rules(arch, layout, needle):
    errs = layout_errors(arch, layout, 128)
    assert any(needle in e for e in errs), errs


def test_ep_with_tp_needs_sequence_parallel_warning():
    assert layout_warnings(NANO, Layout(2, 1, 1, 4, 1, False), 8)
    assert layout_warnings(NANO, Layout(2, 1, 1, 4, 1, True), 8) == []


def test_recipe_plan_gpus_prints_the_table_and_json(run_recipe):
    p = run_recipe("plan", "nemotron3_nano", "--gpus", "8")
    assert p.returncode == 0, p.stderr
    assert "## the recipe's cells" in p.stdout and "OVER by" in p.stdout
    assert "ray job submit" not in p.stdout  # the planner table, not the launch plan
    j = run_recipe("plan", "nemotron3_nano", "--gpus", "16", "--nodes", "2", "--format", "json")
    d = json.loads(j.stdout)
    assert (d["gpus"], d["nodes"]) == (16, 2) and "calibration" in d
    bad = run_recipe("plan", "nemotron3_nano", "--gpus", "12", "--nodes", "5")
    assert bad.returncode == 2 and "--gpus 12 cannot be spread evenly over --nodes 5" in bad.stderr


# -- a dense NemotronH (the 4B sibling's published config fields, no MoE) ---------------------------
DENSE_4B = {"model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"], "hidden_size": 3136,
            "intermediate_size": 12544, "vocab_size": 131072, "num_hidden_layers": 42,
            "hybrid_override_pattern": "M-M-M-MM-M-M*-M-M*-M-M-M*-M-M-MM*-MMM-M-M-", "mamba_num_heads": 96,
            "mamba_head_dim": 80, "n_groups": 8, "ssm_state_size": 128, "conv_kernel": 4,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128}
DENSE_ARGS = ["--num-layers", "42", "--hidden-size", "3136", "--ffn-hidden-size", "12544",
              "--num-attention-heads", "40", "--group-query-attention", "--num-query-groups", "8"]
TP2_PP2 = Layout(2, 2, 1, 1, 1, True)


def test_dense_config_has_no_experts_and_its_layer_counts():
    shape = NH.shape(DENSE_4B)
    assert (shape.experts, shape.expert_params()) == (0, 0)
    assert [shape.pattern.count(c) for c in "M-*E"] == [21, 17, 4, 0]
    # 3,973,556,832 parameters are published for the 4B; the count from config fields lands within 1%
    # (tie_word_embeddings and the norms' exact layout are not among the published fields)
    assert abs(shape.total_params() - 3_973_556_832) / 3_973_556_832 < 0.01, shape.total_params()


def test_dense_rules_reject_ep_and_accept_tp2_pp2():
    arch = family_architecture(NH, DENSE_ARGS, DENSE_4B)
    assert layout_errors(arch, TP2_PP2, 8) == []
    assert any("EP=2 on a dense model" in e for e in layout_errors(arch, Layout(2, 2, 1, 2, 1, True), 8))
    assert any("96 Mamba heads are not divisible by TP=" in e or "Mamba groups" in e
               for e in layout_errors(arch, Layout(16, 1, 1, 1, 1, True), 16))


@pytest.mark.parametrize("gpu,capacity", [("H100", 79.05), ("H200", 139.8)])
def test_dense_tp2_pp2_ep1_plans_on_h100_and_h200(gpu, capacity):
    result = plan_layouts(RECIPE, 8, 1, argv=ARGV, model_args=DENSE_ARGS, hf_config=DENSE_4B, gpu=gpu)
    assert result.capacity_gib == pytest.approx(capacity, abs=0.1)
    assert result.expert_params == 0
    assert all(r.layout.ep == 1 for r in result.rows if r.valid)
    row = result.row(TP2_PP2)
    assert row is not None and row.valid and row.fits, row
    assert row.memory.peak <= capacity


def test_plan_of_a_family_without_memory_model_says_so(monkeypatch):
    import types

    import runner.planner as planner

    bare = types.SimpleNamespace(NAME="bare", layout_rules=lambda cfg: (lambda lay: []))
    monkeypatch.setattr(planner, "load_family", lambda name: bare)
    with pytest.raises(UsageError, match="model family nemotron_h provides no memory model"):
        plan_layouts(RECIPE, 8, argv=ARGV)
