"""Stand-in for miles.utils.arguments (see ../../README.md): same entry point, same failure modes."""

import argparse
import json
import os
import sys
import time

INT = ["--actor-num-gpus-per-node", "--actor-num-nodes", "--context-parallel-size", "--expert-model-parallel-size",
       "--expert-tensor-parallel-size", "--ffn-hidden-size", "--global-batch-size", "--hidden-size", "--kv-channels",
       "--log-probs-chunk-size", "--make-vocab-size-divisible-by", "--max-tokens-per-gpu", "--moe-ffn-hidden-size",
       "--moe-router-group-topk", "--moe-router-num-groups", "--moe-router-topk",
       "--moe-shared-expert-intermediate-size", "--n-samples-per-prompt", "--num-attention-heads", "--num-experts",
       "--num-gpus-per-node", "--num-layers", "--num-query-groups", "--num-rollout", "--pipeline-model-parallel-size",
       "--recompute-num-layers", "--rollout-batch-size", "--rollout-max-response-len", "--rollout-num-gpus",
       "--rollout-num-gpus-per-engine", "--rollout-seed", "--save-interval", "--seed", "--tensor-model-parallel-size",
       "--vocab-size"]
FLOAT = ["--adam-beta1", "--adam-beta2", "--attention-dropout", "--entropy-coef", "--eps-clip", "--eps-clip-high",
         "--hidden-dropout", "--kl-loss-coef", "--lr", "--moe-aux-loss-coeff", "--moe-router-bias-update-rate",
         "--moe-router-topk-scaling-factor", "--rollout-temperature", "--sglang-mem-fraction-static",
         "--weight-decay"]
STR = ["--advantage-estimator", "--attention-backend", "--hf-checkpoint", "--input-key", "--kl-loss-type",
       "--label-key", "--lr-decay-style", "--megatron-to-hf-mode", "--moe-router-dtype",
       "--moe-router-load-balancing-type", "--moe-router-score-function", "--normalization",
       "--optimizer", "--position-embedding-type", "--prompt-data", "--recompute-granularity", "--recompute-method",
       "--ref-load", "--rm-type", "--save", "--save-debug-event-data", "--wandb-group", "--wandb-project"]
SWITCH = ["--accumulate-allreduce-grads-in-fp32", "--apply-chat-template", "--attention-softmax-in-fp32",
          "--balance-data", "--colocate", "--deterministic-mode", "--disable-bias-linear", "--group-query-attention",
          "--moe-grouped-gemm", "--moe-router-enable-expert-bias", "--moe-router-pre-softmax", "--rollout-shuffle",
          "--sequence-parallel", "--sglang-enable-deterministic-inference", "--untie-embeddings-and-output-weights",
          "--use-dynamic-batch-size", "--use-kl-loss", "--use-miles-router", "--use-rollout-routing-replay",
          "--use-wandb"]


def build_parser():
    parser = argparse.ArgumentParser(description="Megatron-LM Arguments", allow_abbrev=False)
    for flag in SWITCH:
        parser.add_argument(flag, action="store_true")
    for flags, kind in ((INT, int), (FLOAT, float), (STR, str)):
        for flag in flags:
            parser.add_argument(flag, type=kind)
    return parser


def load_hf_config(path):
    """As AutoConfig.from_pretrained(path, trust_remote_code=True): config.json, and its auto_map module."""
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise OSError(f"Can't load the configuration of '{path}'.")
    with open(cfg_file) as f:
        cfg = json.load(f)
    module = (cfg.get("auto_map") or {}).get("AutoConfig", "").split(".")[0]
    if module and not os.path.isfile(os.path.join(path, module + ".py")):
        raise OSError(f"{path} does not appear to have a file named {module}.py.")
    return cfg


def parse_args(add_custom_arguments=None):
    time.sleep(float(os.environ.get("FAKE_MILES_SLEEP", "0")))  # tests: a parser that hangs
    args = build_parser().parse_args()  # sys.argv, as miles reads it
    if args.hf_checkpoint:
        cfg = load_hf_config(args.hf_checkpoint)
        errors = [f"{k} in hf config {cfg[k]} is not equal to {m} {getattr(args, m)}, please check the config."
                  for k, m in (("hidden_size", "hidden_size"), ("num_hidden_layers", "num_layers"))
                  if k in cfg and getattr(args, m) is not None and cfg[k] != getattr(args, m)]
        if errors:
            raise AssertionError("hf_validate_args failed: " + "; ".join(errors))
    args.world_size = args.actor_num_nodes * args.actor_num_gpus_per_node
    tp, pp, cp = args.tensor_model_parallel_size or 1, args.pipeline_model_parallel_size or 1, \
        args.context_parallel_size or 1
    assert args.world_size % (tp * pp * cp) == 0, (
        f"world size ({args.world_size}) is not divisible by total_model_size (total_model_size={tp * pp * cp})")
    if tp > 1 or cp > 1:
        assert os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS") == "1", (
            "Using tensor model parallelism or context parallelism require setting the environment variable "
            "CUDA_DEVICE_MAX_CONNECTIONS to 1")
    if args.deterministic_mode:
        choices = ["Tree", "Ring", "CollnetDirect", "CollnetChain", "^NVLS"]
        assert os.getenv("NCCL_ALGO") in choices, f"NCCL_ALGO must be one of {choices}."
    if os.environ.get("FAKE_MILES_RECORD"):  # tests: what the parser saw
        with open(os.environ["FAKE_MILES_RECORD"], "w") as f:
            json.dump({"argv": sys.argv, "pythonpath": os.environ.get("PYTHONPATH"),
                       "secrets": sorted(k for k in os.environ if k in ("WANDB_API_KEY", "HF_TOKEN"))}, f)
    return args
