"""The miles adapter (radixark/miles 78527b91: Megatron trainer, SGLang rollout, Ray).

What the runner needs to know of miles, and nowhere else: its preflight checks, the traps of its
train argv, what reaches the model in bridge mode, the memory settings its flags imply, where its
metrics live and what the gate must say when `train/*` is missing, and where its image puts it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from runner.frameworks import miles_bridge as bridge
from runner.frameworks.base import Framework
from runner.frameworks.miles_log import MILES_PATTERNS
from runner.frameworks.miles_traps import recipe_findings
from runner.model.finding import Finding
from runner.model.memory import MemorySettings
from runner.plan.jobenv import forwarded, master_addr, nvls_enabled, pythonpath
from runner.plan.options import clean
from runner.plan.spec import Job
from runner.recipe import Table, args_to_dict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runner.checks import Check
    from runner.plan.options import RunOptions
    from runner.plan.spec import Launch, Paths

# Megatron model flags (any of them: a file missing --num-layers is still judged, not skipped)
_MODEL_FLAGS = {"--num-layers", "--hidden-size", "--num-attention-heads", "--ffn-hidden-size",
                "--num-experts", "--kv-channels", "--num-query-groups", "--moe-router-topk"}


def _multi(argv: list[str], flag: str) -> list[str]:
    if flag not in argv:
        return []
    out = []
    for w in argv[argv.index(flag) + 1:]:
        if w.startswith("--"):
            break
        out.append(w)
    return out


class MilesTable(Table):
    """recipe.toml [miles]: what differs per recipe, as upstream's launcher states it in its typed
    `_Recipe` row (miles 78527b91, its scripts/ launcher of the 30B and 4B; the cell carries the layout), and
    what the `model` preflight holds the built model to."""

    n_samples_per_prompt: Annotated[int, Field(strict=True, ge=1)]
    rollout_max_response_len: Annotated[int, Field(strict=True, ge=1)]
    global_batch_size: Annotated[int, Field(strict=True, ge=1)]
    recompute: Annotated[bool, Field(strict=True)]  # full activation recompute, uniform, 1 layer
    log_probs_chunk_size: Annotated[int, Field(strict=True, ge=1)] | None = None
    use_rollout_routing_replay: Annotated[bool, Field(strict=True)] = False  # R3: MoE only
    # miles' own HTTP router in front of the SGLang engines (not upstream's launcher at 78527b91)
    use_miles_router: Annotated[bool, Field(strict=True)] = False
    bridge: str = ""  # the bridge class miles' plugin registers ("": not checked)
    # field = why the built model may differ from model_args.txt (shown as a note)
    accepted_model_differences: dict[str, str] = {}


class Miles(Framework):
    NAME = "miles"
    TABLE = MilesTable
    renders = True
    PREFLIGHT = ("args", "model", "packages")
    METRIC_DOMAINS = ("train/", "rollout/", "perf/", "eval/")
    # train/* by train/step, eval/* by eval/step, everything else by rollout/step
    STEP_KEYS = {"train/": "train/step", "eval/": "eval/step", "": "rollout/step"}
    FATAL_LOG_LINES = tuple(MILES_PATTERNS)  # plugin-load failures miles only warns about

    def render(self, opts: RunOptions, paths: Paths, environ: Mapping[str, str], *,
               inherit_env: bool = True) -> Job:
        """The GRPO launch every miles recipe shares, in the order of upstream's launcher: model, ckpt,
        rollout, optimizer, grpo, (wandb), perf, sglang, misc, determinism. The recipe's [miles] row
        holds what differs; the cell the layout; the environment where the image has miles
        (RECIPE_MILES_DIR, RECIPE_MEGATRON_DIR) and the optional wandb project (RECIPE_WANDB_PROJECT;
        its key is read from WANDB_API_KEY by wandb itself)."""
        row: MilesTable = self.options(opts.recipe)
        cell, nodes, gpus = opts.cell, opts.nodes, opts.gpus_per_node
        miles_dir = clean("RECIPE_MILES_DIR", environ.get("RECIPE_MILES_DIR") or "/root/miles")
        megatron_dir = clean("RECIPE_MEGATRON_DIR", environ.get("RECIPE_MEGATRON_DIR") or "/root/Megatron-LM")
        wandb = environ.get("RECIPE_WANDB_PROJECT", "")
        perf = ["--tensor-model-parallel-size", str(cell.tp), *(["--sequence-parallel"] if cell.sp else []),
                "--pipeline-model-parallel-size", str(cell.pp), "--context-parallel-size", str(cell.cp),
                "--expert-model-parallel-size", str(cell.ep), "--expert-tensor-parallel-size", str(cell.etp)]
        if row.recompute:
            perf += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
        perf += ["--use-dynamic-batch-size", "--max-tokens-per-gpu", str(cell.max_tokens_per_gpu)]
        if row.log_probs_chunk_size is not None:
            perf += ["--log-probs-chunk-size", str(row.log_probs_chunk_size)]
        sglang = ["--rollout-num-gpus-per-engine", "1", "--sglang-mem-fraction-static", "0.7"]
        sglang += ["--use-miles-router"] if row.use_miles_router else []
        # R3: training replays the experts SGLang chose, so train and rollout log-probs stay aligned
        sglang += ["--use-rollout-routing-replay"] if row.use_rollout_routing_replay else []
        blocks = [
            ("model", opts.recipe.model_args()),
            ("ckpt", ["--hf-checkpoint", paths.model_dir, "--ref-load", paths.model_dir,
                      "--save", f"{paths.output_dir}/checkpoints", "--save-interval", "20",
                      "--megatron-to-hf-mode", "bridge",
                      # a resume: the parent run's --save directory, whose tracker file names the iteration
                      *(["--load", str(opts.resume_from)] if opts.resume_from else [])]),
            ("rollout", ["--prompt-data", f"{paths.data_dir}/{opts.recipe.dataset.file}",
                         "--input-key", "prompt", "--label-key", "label", "--apply-chat-template", "--rollout-shuffle",
                         "--rm-type", "deepscaler", "--num-rollout", str(opts.num_rollout),
                         "--rollout-batch-size", "32", "--n-samples-per-prompt", str(row.n_samples_per_prompt),
                         "--rollout-max-response-len", str(row.rollout_max_response_len),
                         "--rollout-temperature", "1", "--global-batch-size", str(row.global_batch_size),
                         "--balance-data"]),
            ("optimizer", ["--optimizer", "adam", "--lr", "1e-6", "--lr-decay-style", "constant",
                           "--weight-decay", "0.1", "--adam-beta1", "0.9", "--adam-beta2", "0.98"]),
            ("grpo", ["--advantage-estimator", "grpo", "--use-kl-loss", "--kl-loss-coef", "0.00",
                      "--kl-loss-type", "low_var_kl", "--entropy-coef", "0.00", "--eps-clip", "0.2",
                      "--eps-clip-high", "0.28"]),
            ("wandb", ["--use-wandb", "--wandb-project", clean("RECIPE_WANDB_PROJECT", wandb), "--wandb-group",
                       clean("RECIPE_WANDB_GROUP", environ.get("RECIPE_WANDB_GROUP") or paths.run_id)]
             if wandb else []),
            ("perf", perf),
            ("sglang", sglang),
            ("misc", ["--attention-dropout", "0.0", "--hidden-dropout", "0.0", "--accumulate-allreduce-grads-in-fp32",
                      "--attention-softmax-in-fp32", "--attention-backend", "auto", "--colocate",
                      # node and GPU counts come from the launch, never silently from $SLURM_JOB_NUM_NODES
                      "--actor-num-nodes", str(nodes), "--actor-num-gpus-per-node", str(gpus),
                      "--num-gpus-per-node", str(gpus), "--rollout-num-gpus", str(nodes * gpus),
                      # the bundle's own: explicit seeds. Metrics are captured from the job's log
                      # (docs/records.md), not --save-debug-event-data: its event logger makes
                      # miles checksum every SGLang engine's weights after each update.
                      "--seed", str(opts.seed), "--rollout-seed", str(opts.rollout_seed)]),
            ("determinism", ["--deterministic-mode", "--sglang-enable-deterministic-inference"]
             if opts.deterministic else []),
        ]
        master = master_addr(environ)
        env = {"PYTHONPATH": pythonpath([miles_dir, megatron_dir], environ, paths.bundle, inherit_env),
               "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_NVLS_ENABLE": nvls_enabled(environ),
               "MASTER_ADDR": master, "PYTHONUNBUFFERED": "1", "no_proxy": f"127.0.0.1,localhost,{master}",
               # the gate reads the metric lines from the job's log: Ray must not fold alike lines of
               # several processes into one "[repeated Nx across cluster]"
               "RAY_DEDUP_LOGS": "0",
               **forwarded(environ)}
        if opts.deterministic:
            env |= {"NCCL_ALGO": "Ring", "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
        return Job(entrypoint=["python3", f"{miles_dir}/train.py"], blocks=[(n, a) for n, a in blocks if a],
                   job_env=env, mkdirs=[f"{paths.output_dir}/checkpoints"],
                   ray_gpus_per_node=gpus, ray_total_gpus=nodes * gpus)

    def checkpoints(self, output_dir: Path) -> tuple[Path | None, list[Path]]:
        """Megatron's rule: --save's latest_checkpointed_iteration.txt names the newest complete
        iter_<7 digits>/, written only once every rank has saved it (radixark/Megatron-LM
        megatron/training/checkpointing.py:738 @37f91617); an iter_ directory above it is incomplete."""
        root = output_dir / "checkpoints"
        tracker = root / "latest_checkpointed_iteration.txt"
        iters = sorted(((int(p.name[5:]), p) for p in (root.glob("iter_[0-9]*") if root.is_dir() else ())
                        if re.fullmatch(r"iter_[0-9]{7}", p.name) and p.is_dir() and not p.is_symlink()),
                       reverse=True)
        text = tracker.read_text()[:32].strip() if tracker.is_file() and not tracker.is_symlink() else ""
        if not re.fullmatch(r"[0-9]{1,7}", text):
            return None, [p for _, p in iters]
        done = int(text)
        newest = root / f"iter_{done:07d}"
        return (newest if newest.is_dir() and not newest.is_symlink() else None), [p for n, p in iters if n > done]

    def cannot_resume(self, argv: list[str]) -> str | None:
        if args_to_dict(argv).get("--megatron-to-hf-mode") == "bridge":
            return ("miles 78527b91 in --megatron-to-hf-mode bridge sets start_rollout_id to 0 whatever --load "
                    "holds (miles/utils/arguments.py:3045), so a resume would load the weights, optimizer and RNG "
                    "but start the rollout count and the data cursor over (docs/resume.md)")
        return None

    def preflight_check(self, name: str, launch: Launch) -> Check | None:
        # Each check's module is imported only when it runs (they pull in the job's interpreter).
        if name == "args":
            from runner.frameworks.miles_args import check_args

            return check_args(launch.recipe, launch.plan)
        if name == "model":
            from runner.frameworks.miles_model import check_model

            return check_model(launch.recipe, launch.plan)
        if name == "packages":
            from runner.frameworks.packages import check_packages

            return check_packages(launch.recipe, launch.plan)
        return None

    def model_args_are_flags(self, model_args: list[str]) -> bool:
        return bool(_MODEL_FLAGS.intersection(model_args))

    def lint_traps(self, argv: list[str], model_args: list[str], cfg: dict[str, Any] | None,
                   moe: bool) -> list[Finding]:
        out = recipe_findings(argv, moe)
        if bridge.is_bridge_mode(argv):
            out += bridge.bridge_notes(argv, model_args)
        return out

    def adjust_model_findings(self, findings: list[Finding], argv: list[str] | None,
                              cfg: dict[str, Any] | None = None) -> list[Finding]:
        if argv is None or not bridge.is_bridge_mode(argv):
            return findings
        return bridge.restate_for_bridge(findings, argv, cfg)

    def memory_settings(self, argv: list[str], max_tokens_per_gpu: int | None = None) -> MemorySettings:
        """Defaults are miles v0.1.0's and Megatron's where a flag is absent."""
        a = args_to_dict(argv)
        colocate = "--colocate" in a
        levels = _multi(argv, "--offload-rollout-level") or ["kv_cache", "weight"]
        offload_rollout = (colocate or "--offload" in a or "--offload-rollout" in a) and "--no-offload-rollout" not in a
        offload_train = (colocate or "--offload" in a or "--offload-train" in a) and "--no-offload-train" not in a
        optimizer = str(a.get("--optimizer", "adam")).lower()
        return MemorySettings(
            max_tokens_per_gpu=max_tokens_per_gpu or int(a.get("--max-tokens-per-gpu", 1024)),
            colocate=colocate, offload_train=offload_train,
            offload_rollout_weights=offload_rollout and "weight" in levels,
            offload_rollout_kv=offload_rollout and "kv_cache" in levels,
            rollout_mem_fraction=float(a.get("--sglang-mem-fraction-static", 0.9)),
            gpus_per_engine=int(a.get("--rollout-num-gpus-per-engine", 1)),
            fp32_grads="--accumulate-allreduce-grads-in-fp32" in a,
            distributed_optimizer=optimizer == "adam",  # miles turns it on for Adam
            optimizer_on_cpu="--optimizer-cpu-offload" in a,
            full_recompute=a.get("--recompute-granularity") == "full",
            vocab_divisible_by=int(a.get("--make-vocab-size-divisible-by", 128)),
        )

    def installed_here(self) -> bool:
        return Path("/root/miles/train.py").is_file()  # where the miles image puts it


ADAPTER = Miles()
