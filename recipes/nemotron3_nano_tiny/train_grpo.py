"""GRPO of the tiny NemotronH-MoE with TRL on CPU: the nemotron3_nano recipe's algorithm at toy size.

run.sh submits this as the Ray job's entrypoint, with the same argument blocks as the 30B launch
(model flags from model_args.txt, then ckpt, rollout, optimizer, grpo, misc). Flag names follow miles.
It refuses to start when the model flags and the HF config disagree (bridge.py), then trains
--num-rollout GRPO steps and writes miles-format metric events to --save-debug-event-data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    # ckpt
    p.add_argument("--hf-checkpoint", required=True, type=Path, help="HF model dir (config, weights, tokenizer)")
    p.add_argument("--save", required=True, type=Path, help="trainer output dir: checkpoint-<step>/ go here")
    p.add_argument("--save-interval", type=int, default=0,
                   help="save a checkpoint every N rollouts (0: only when stopped by SIGTERM/SIGUSR1)")
    p.add_argument("--load", type=Path, help="resume from the newest complete checkpoint under this dir")
    # rollout
    p.add_argument("--prompt-data", required=True, type=Path, help="JSONL with the input and label keys")
    p.add_argument("--input-key", default="prompt")
    p.add_argument("--label-key", default="label")
    p.add_argument("--num-rollout", type=int, default=10)
    p.add_argument("--rollout-batch-size", type=int, default=8, help="prompts per rollout")
    p.add_argument("--n-samples-per-prompt", type=int, default=4)
    p.add_argument("--rollout-max-response-len", type=int, default=4)
    p.add_argument("--rollout-temperature", type=float, default=1.0)
    p.add_argument("--global-batch-size", type=int, default=32, help="samples per optimizer step")
    # optimizer
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--adam-beta1", type=float, default=0.9)
    p.add_argument("--adam-beta2", type=float, default=0.98)
    p.add_argument("--clip-grad", type=float, default=1.0)
    # grpo
    p.add_argument("--kl-loss-coef", type=float, default=0.0)
    p.add_argument("--eps-clip", type=float, default=0.2)
    p.add_argument("--eps-clip-high", type=float, default=0.28)
    # rollout routing replay
    p.add_argument("--use-rollout-routing-replay", action="store_true",
                   help="force the rollout's MoE experts in the training forwards (R3)")
    # misc
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--rollout-seed", type=int, default=42)
    p.add_argument("--deterministic-mode", action="store_true")
    p.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--save-debug-event-data", required=True, type=Path, help="metric events directory")
    args, model_words = p.parse_known_args(argv)
    return args, model_words


def fail(message: str, code: int = 2) -> None:
    print(f"train_grpo: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    args, model_words = parse_args(sys.argv[1:] if argv is None else argv)
    stray = [w for w in model_words if w.startswith("--") and w not in _model_flag_names()]
    if stray:
        fail(f"unknown flags: {' '.join(stray)}")
    if args.rollout_batch_size * args.n_samples_per_prompt % args.global_batch_size:
        fail(f"--global-batch-size {args.global_batch_size} must divide rollout-batch-size x n-samples-per-prompt "
             f"({args.rollout_batch_size * args.n_samples_per_prompt})")

    if not args.prompt_data.is_file():
        fail(f"--prompt-data {args.prompt_data}: no such file (expected a JSONL of prompts and labels)", 4)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (args.hf_checkpoint / name).is_file():
            fail(f"--hf-checkpoint {args.hf_checkpoint}: {name} missing (expected an HF model directory)", 4)

    if args.save_interval < 0:
        fail(f"--save-interval {args.save_interval}: expected 0 or a positive number of rollouts")
    resume_from = None
    if args.load is not None:
        from checkpoints import latest_complete

        resume_from, skipped = latest_complete(args.load)
        for p in skipped:
            print(f"train_grpo: {p}: incomplete checkpoint (no completion marker), passed over", file=sys.stderr,
                  flush=True)
        if resume_from is None:
            fail(f"--load {args.load}: no complete checkpoint-<step> directory", 4)
        print(f"train_grpo: resuming from {resume_from}", file=sys.stderr, flush=True)

    import bridge

    config_path = args.hf_checkpoint / "config.json"
    try:
        raw_config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        fail(f"{config_path}: cannot read the model config ({e})", 4)
    flags = bridge.parse_flags(model_words)
    problems = bridge.mismatches(flags, raw_config)
    if problems:
        fail(f"model args and {config_path} disagree: " + "; ".join(problems), 3)

    import torch

    torch.set_num_threads(args.num_threads)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    # isort: split
    from checkpoints import MarkComplete, StopOnSignal
    from events import EventWriter, MilesEventsCallback
    from reward import arithmetic_reward
    from tiny_trainer import TinyGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.hf_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(args.hf_checkpoint, dtype=torch.float32)
    want = float(flags.get("--moe-router-topk-scaling-factor", raw_config.get("routed_scaling_factor", 1.0)))
    scales = sorted(set(bridge.gate_scales(model)))
    if scales != [want]:
        fail(f"the built model's MoE routers apply routed scaling factors {scales}, expected [{want}]", 3)

    data = load_dataset("json", data_files=str(args.prompt_data), split="train")
    absent = [k for k in (args.input_key, args.label_key) if k not in data.column_names]
    if absent:
        fail(f"--prompt-data {args.prompt_data}: no field {', '.join(absent)} (fields: {', '.join(data.column_names)})")
    if args.input_key != "prompt" or args.label_key != "label":
        data = data.rename_columns({args.input_key: "prompt", args.label_key: "label"})

    samples = args.rollout_batch_size * args.n_samples_per_prompt
    steps_per_rollout = samples // args.global_batch_size
    config = GRPOConfig(
        output_dir=str(args.save),
        # batching: one rollout = rollout_batch_size prompts x n samples; optimizer steps of global_batch_size
        per_device_train_batch_size=args.global_batch_size,
        gradient_accumulation_steps=1,
        steps_per_generation=steps_per_rollout,
        num_generations=args.n_samples_per_prompt,
        max_steps=args.num_rollout * steps_per_rollout,
        max_completion_length=args.rollout_max_response_len,
        temperature=args.rollout_temperature,
        top_p=1.0,
        top_k=0,
        # GRPO: per-sample token mean then batch mean (miles' default), group-normalised advantages
        loss_type="grpo",
        scale_rewards="group",
        beta=args.kl_loss_coef,
        epsilon=args.eps_clip,
        epsilon_high=args.eps_clip_high,
        num_iterations=1,
        # TRL turns activation checkpointing on by default; its recomputation runs during backward,
        # outside the routing-replay context, and a 1.5M-parameter model needs no memory saving.
        gradient_checkpointing=False,
        # optimizer: Megatron's adam with weight decay is decoupled (AdamW)
        optim="adamw_torch",
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2,
        max_grad_norm=args.clip_grad,
        # CPU, fp32, reproducible
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        full_determinism=args.deterministic_mode,
        dataloader_num_workers=0,
        disable_dropout=True,
        # logging: every optimizer step, to the event files only
        logging_steps=1,
        report_to=[],
        save_strategy="steps" if args.save_interval else "no",
        save_steps=max(args.save_interval, 1) * steps_per_rollout,
        log_completions=False,
    )
    writer = EventWriter(args.save_debug_event_data)
    stop = StopOnSignal()
    trainer = TinyGRPOTrainer(
        model=model,
        reward_funcs=[arithmetic_reward],
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[MilesEventsCallback(writer, steps_per_rollout), MarkComplete(), stop],
        rollout_seed=args.rollout_seed,
        routing_replay=args.use_rollout_routing_replay,
    )
    try:
        trainer.train(resume_from_checkpoint=None if resume_from is None else str(resume_from))
    finally:
        writer.close()
    done = trainer.state.global_step // steps_per_rollout
    if stop.stopped and done < args.num_rollout:
        print(f"train_grpo: stopped by a signal after {done}/{args.num_rollout} rollouts; "
              f"checkpoint-{trainer.state.global_step} saved under {args.save}", file=sys.stderr, flush=True)
        return 143
    print(f"train_grpo: {args.num_rollout} rollouts done; events in {args.save_debug_event_data}", flush=True)
    return 0


def _model_flag_names() -> set[str]:
    """Every flag model_args.txt may carry: the checked ones and Megatron-only switches (no HF meaning)."""
    import bridge

    megatron_only = {"--group-query-attention", "--moe-router-enable-expert-bias", "--moe-grouped-gemm",
                     "--moe-router-dtype", "--moe-router-pre-softmax", "--moe-router-load-balancing-type",
                     "--moe-router-bias-update-rate", "--moe-aux-loss-coeff", "--num-layers",
                     "--make-vocab-size-divisible-by", "--untie-embeddings-and-output-weights",
                     "--disable-bias-linear"}
    return set(bridge.VALUED) | set(bridge.FIXED) | megatron_only


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
