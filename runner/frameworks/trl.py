"""The TRL adapter: a recipe whose trainer is Hugging Face TRL on the host's Python (no image).

Its model is built from config.json by transformers itself, so there are no trainer model flags
to lint; its one framework check is that the job's interpreter has the recipe's packages. It renders
the launch of the bundle's TRL GRPO trainer (a recipe's train_grpo.py, miles' flag names) from the
recipe's [trl] row.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from runner.errors import UsageError
from runner.frameworks.base import Framework
from runner.plan.jobenv import master_addr
from runner.plan.options import clean
from runner.plan.spec import Job
from runner.recipe import Table

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from runner.checks import Check
    from runner.plan.options import RunOptions
    from runner.plan.spec import Launch, Paths

Pos = Annotated[int, Field(strict=True, ge=1)]


class TrlTable(Table):
    """recipe.toml [trl]: the trainer script and what differs from the 30B recipe's GRPO constants."""

    entrypoint: str = "train_grpo.py"  # under the recipe directory
    rollout_batch_size: Pos
    n_samples_per_prompt: Pos
    rollout_max_response_len: Pos
    global_batch_size: Pos
    lr: Annotated[str, Field(strict=True, pattern=r"^[0-9.]+(e-?[0-9]+)?$")]  # as written on the command line
    use_rollout_routing_replay: Annotated[bool, Field(strict=True)] = False
    save_interval: Pos | None = None  # rollouts between checkpoints (--save-interval); none: only on SIGTERM


class Trl(Framework):
    NAME = "trl"
    PREFLIGHT = ("packages",)
    TABLE = TrlTable
    renders = True

    def render(self, opts: RunOptions, paths: Paths, environ: Mapping[str, str], *,
               inherit_env: bool = True) -> Job:
        """One CPU process, one torch thread (RECIPE_TORCH_THREADS): CPU reductions then run in one
        fixed order, so reruns agree bit for bit; the interpreter is RECIPE_PYTHON (default python3)."""
        row: TrlTable = self.options(opts.recipe)
        c = opts.cell
        if (c.tp, c.pp, c.cp, c.ep, c.etp) != (1, 1, 1, 1, 1):
            raise UsageError(f"{opts.recipe.name} runs in one CPU process: cell '{c.name}' must have "
                             "tp, pp, cp, ep and etp all 1")
        threads = environ.get("RECIPE_TORCH_THREADS") or "1"
        if not threads.isdigit() or not 1 <= int(threads) <= 4096:
            raise UsageError(f"RECIPE_TORCH_THREADS={threads!r}: expected an integer from 1 to 4096")
        python = clean("RECIPE_PYTHON", environ.get("RECIPE_PYTHON") or "python3")
        blocks = [
            ("model", opts.recipe.model_args()),
            ("ckpt", ["--hf-checkpoint", paths.model_dir, "--save", f"{paths.output_dir}/trainer",
                      *(["--save-interval", str(row.save_interval)] if row.save_interval else []),
                      *(["--load", str(opts.resume_from)] if opts.resume_from else [])]),
            ("rollout", ["--prompt-data", f"{paths.data_dir}/{opts.recipe.dataset.file}", "--input-key", "prompt",
                         "--label-key", "label", "--num-rollout", str(opts.num_rollout),
                         "--rollout-batch-size", str(row.rollout_batch_size),
                         "--n-samples-per-prompt", str(row.n_samples_per_prompt),
                         "--rollout-max-response-len", str(row.rollout_max_response_len),
                         "--rollout-temperature", "1", "--global-batch-size", str(row.global_batch_size)]),
            ("optimizer", ["--lr", row.lr, "--weight-decay", "0.1", "--adam-beta1", "0.9", "--adam-beta2", "0.98"]),
            ("grpo", ["--kl-loss-coef", "0.00", "--eps-clip", "0.2", "--eps-clip-high", "0.28"]),
            ("routing", ["--use-rollout-routing-replay"] if row.use_rollout_routing_replay else []),
            ("misc", ["--seed", str(opts.seed), "--rollout-seed", str(opts.rollout_seed), "--num-threads", threads,
                      "--save-debug-event-data", f"{paths.run_dir}/events"]),
            ("determinism", ["--deterministic-mode"] if opts.deterministic else []),
        ]
        master = master_addr(environ)
        env = {"PYTHONUNBUFFERED": "1", "MASTER_ADDR": master, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_DATASETS_CACHE": f"{paths.output_dir}/datasets_cache", "no_proxy": f"127.0.0.1,localhost,{master}"}
        return Job(entrypoint=[python, f"{paths.recipe_dir}/{row.entrypoint}"], blocks=[(n, a) for n, a in blocks if a],
                   job_env=env, mkdirs=[f"{paths.run_dir}/events", f"{paths.output_dir}/trainer"],
                   ray_gpus_per_node=0, ray_total_gpus=0,
                   # Ray >= 2.5x drains a TERMed node for up to 30 s; nothing needs draining once the job ended
                   script_env={"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})

    def checkpoints(self, output_dir: Path) -> tuple[Path | None, list[Path]]:
        """The trainer's rule (the recipe's checkpoints.py): output/trainer/checkpoint-<step>/ is complete
        once its `complete` marker is there; its --load takes the newest complete one."""
        found: list[tuple[int, Path]] = []
        root = output_dir / "trainer"
        for p in root.iterdir() if root.is_dir() and not root.is_symlink() else ():
            m = re.fullmatch(r"checkpoint-([0-9]{1,12})", p.name)
            if m and p.is_dir() and not p.is_symlink():
                found.append((int(m.group(1)), p))
        incomplete: list[Path] = []
        for _, p in sorted(found, reverse=True):
            marker = p / "complete"
            if marker.is_file() and not marker.is_symlink():
                return p, incomplete
            incomplete.append(p)
        return None, incomplete

    def preflight_check(self, name: str, launch: Launch) -> Check | None:
        if name == "packages":
            from runner.frameworks.packages import check_packages

            return check_packages(launch.recipe, launch.plan)
        return None


ADAPTER = Trl()
