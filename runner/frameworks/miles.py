"""The miles adapter (radixark/miles 78527b91: Megatron trainer, SGLang rollout, Ray).

What the runner needs to know of miles, and nowhere else: its preflight checks, the traps of its
train argv, what reaches the model in bridge mode, the memory settings its flags imply, where its
metrics live and what the gate must say when `train/*` is missing, and where its image puts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.frameworks import miles_bridge as bridge
from runner.frameworks.base import Framework
from runner.frameworks.miles_log import MILES_PATTERNS
from runner.frameworks.miles_traps import recipe_findings
from runner.model.finding import Finding
from runner.model.memory import MemorySettings
from runner.recipe import args_to_dict

if TYPE_CHECKING:
    from runner.checks import Check
    from runner.gate.metrics import Series
    from runner.plan.resolve import Launch

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


class Miles(Framework):
    NAME = "miles"
    PREFLIGHT = ("args", "model", "packages")
    METRIC_DOMAINS = ("train/", "rollout/", "perf/", "eval/")
    # train/* by train/step, eval/* by eval/step, everything else by rollout/step
    STEP_KEYS = {"train/": "train/step", "eval/": "eval/step", "": "rollout/step"}
    FATAL_LOG_LINES = tuple(MILES_PATTERNS)  # plugin-load failures miles only warns about

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

    def gate_notes(self, launch: Launch, series: Series) -> list[str]:
        """After a multi-node run without a single train/* value: say where those events went.

        miles logs train/* from one rank: TP rank 0 and DP rank 0 on the *last* pipeline stage. With
        several nodes and PP > 1 that rank runs on a later node, and its actor_*.jsonl is written to
        <run dir>/events as that node sees it. The sbatch job proves the run directory is shared before
        Ray starts; a run started otherwise may have left them on that node's disk.
        """
        if launch.nodes < 2 or any(m.startswith("train/") for m in series.metrics()):
            return []
        events = launch.run_dir / "events"
        return [f"no train/* metric in {events} after a {launch.nodes}-node run: miles writes train/* from the "
                f"rank with TP 0 and DP 0 on the last pipeline stage (PP={launch.cell.layout.pp}), which runs on a "
                f"node other than the head when PP > 1; its actor_*.jsonl went to {events} on that node. Run with "
                "a --runs-dir that every node shares (the sbatch job checks it), or copy that node's events/ here "
                f"and `recipe check {launch.run_dir}`"]

    def installed_here(self) -> bool:
        return Path("/root/miles/train.py").is_file()  # where the miles image puts it


ADAPTER = Miles()
