"""The default cell's argv carries every flag and value of the seed, in the seed's block order.

The expected blocks below are transcribed from the seed document (the miles recipe page) and the
upstream launch script's values, not produced by the renderer. Paths are the test's own dirs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.plan.render import render_plan
from runner.recipe import load_recipe

M, D, OUT, R = "/in/model", "/in/data", "/out", "/runs/r1"

SEED_BLOCKS = {
    "model": """--disable-bias-linear --group-query-attention --num-attention-heads 32 --num-query-groups 2
        --kv-channels 128 --num-layers 52 --hidden-size 2688 --ffn-hidden-size 1856 --normalization RMSNorm
        --position-embedding-type none --vocab-size 131072 --make-vocab-size-divisible-by 128
        --untie-embeddings-and-output-weights --num-experts 128 --moe-router-topk 6 --moe-ffn-hidden-size 1856
        --moe-shared-expert-intermediate-size 3712 --moe-router-score-function sigmoid
        --moe-router-enable-expert-bias --moe-grouped-gemm --moe-router-dtype fp32 --moe-router-num-groups 1
        --moe-router-group-topk 1 --moe-router-topk-scaling-factor 2.5 --moe-router-pre-softmax
        --moe-router-load-balancing-type seq_aux_loss --moe-router-bias-update-rate 0 --moe-aux-loss-coeff 0""",
    "ckpt": f"""--hf-checkpoint {M} --ref-load {M} --save {OUT}/checkpoints --save-interval 20
        --megatron-to-hf-mode bridge""",
    "rollout": f"""--prompt-data {D}/dapo-math-17k.jsonl --input-key prompt --label-key label --apply-chat-template
        --rollout-shuffle --rm-type deepscaler --num-rollout 10 --rollout-batch-size 32 --n-samples-per-prompt 4
        --rollout-max-response-len 1024 --rollout-temperature 1 --global-batch-size 128 --balance-data""",
    "optimizer": """--optimizer adam --lr 1e-6 --lr-decay-style constant --weight-decay 0.1 --adam-beta1 0.9
        --adam-beta2 0.98""",
    "grpo": """--advantage-estimator grpo --use-kl-loss --kl-loss-coef 0.00 --kl-loss-type low_var_kl
        --entropy-coef 0.00 --eps-clip 0.2 --eps-clip-high 0.28""",
    "perf": """--tensor-model-parallel-size 2 --sequence-parallel --pipeline-model-parallel-size 2
        --context-parallel-size 1 --expert-model-parallel-size 2 --expert-tensor-parallel-size 1
        --recompute-granularity full --recompute-method uniform --recompute-num-layers 1
        --use-dynamic-batch-size --max-tokens-per-gpu 1024 --log-probs-chunk-size 128""",
    "sglang": """--rollout-num-gpus-per-engine 1 --sglang-mem-fraction-static 0.7 --use-miles-router
        --use-rollout-routing-replay""",
    "misc": """--attention-dropout 0.0 --hidden-dropout 0.0 --accumulate-allreduce-grads-in-fp32
        --attention-softmax-in-fp32 --attention-backend auto --colocate --actor-num-nodes 1
        --actor-num-gpus-per-node 8 --num-gpus-per-node 8 --rollout-num-gpus 8""",
}


def pairs(words: list[str]) -> list[tuple[str, str | None]]:
    out, i = [], 0
    while i < len(words):
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            out.append((words[i], words[i + 1]))
            i += 2
        else:
            out.append((words[i], None))
            i += 1
    return out


@pytest.fixture(scope="module")
def argv():
    p = render_plan(load_recipe("nemotron3_nano"), None, model_dir=Path(M), data_dir=Path(D),
                    output_dir=Path(OUT), run_dir=Path(R), inputs_dir=Path("/in"))
    return p.argv


@pytest.mark.parametrize("block", list(SEED_BLOCKS))
def test_seed_block_present_verbatim(argv, block):
    want = SEED_BLOCKS[block].split()
    n = len(want)
    windows = [argv[i:i + n] for i in range(len(argv) - n + 1)]
    assert want in windows, f"seed {block} block not found contiguously in the rendered argv"


def test_blocks_in_seed_order(argv):
    starts = [argv.index(SEED_BLOCKS[b].split()[0]) for b in SEED_BLOCKS]
    assert starts == sorted(starts)


def test_every_seed_flag_has_the_seed_value(argv):
    got = dict(pairs(argv))
    for block in SEED_BLOCKS.values():
        for flag, value in pairs(block.split()):
            assert flag in got, flag
            assert got[flag] == value, f"{flag}: seed says {value!r}, argv has {got[flag]!r}"


def test_added_flags_are_only_the_documented_ones(argv):
    """Beyond the seed: explicit seeds. Nothing else may sneak in (not --save-debug-event-data, whose
    event logger makes miles checksum the engines' weights: docs/records.md)."""
    seed_flags = {f for b in SEED_BLOCKS.values() for f, _ in pairs(b.split())}
    extra = [f for f, _ in pairs(argv) if f not in seed_flags]
    assert extra == ["--seed", "--rollout-seed"]


def test_no_flag_repeated(argv):
    flags = [f for f, _ in pairs(argv)]
    assert len(flags) == len(set(flags))
