"""Megatron divisibility rules, one planted violation at a time."""

import pytest

from runner.model.parallel import Architecture, Layout, layout_errors
from runner.recipe import load_recipe

NANO = Architecture.from_model_args(load_recipe("nemotron3_nano").model_args())


def test_architecture_read_from_model_args():
    assert (NANO.num_layers, NANO.num_attention_heads, NANO.num_query_groups, NANO.num_experts) == (52, 32, 2, 128)


@pytest.mark.parametrize("name", list(load_recipe("nemotron3_nano").cells))
def test_verified_cells_are_valid_on_8_gpus(name):
    assert layout_errors(NANO, Layout.of(load_recipe("nemotron3_nano").cell(name)), 8) == []


@pytest.mark.parametrize("layout,world,needle", [
    (Layout(3, 1, 1, 1, 1, True), 6, "32 attention heads are not divisible by TP=3"),
    (Layout(1, 3, 1, 1, 1, False), 3, "52 layers cannot be split evenly over PP=3"),
    (Layout(1, 1, 1, 3, 1, False), 3, "128 experts are not divisible by EP=3"),
    (Layout(1, 1, 1, 1, 1, True), 8, "sequence parallel needs TP > 1"),
    (Layout(2, 2, 2, 1, 1, True), 4, "TP*PP*CP = 2*2*2 = 8 does not divide 4 GPUs"),
    (Layout(1, 2, 1, 8, 1, False), 8, "EP*ETP = 8 does not divide the 8/2 GPUs"),
])
def test_each_rule_catches_its_violation(layout, world, needle):
    errs = layout_errors(NANO, layout, world)
    assert any(needle in e for e in errs), errs


def test_missing_flag_is_reported():
    with pytest.raises(ValueError, match="--num-layers"):
        Architecture.from_model_args(["--num-attention-heads", "8"])
