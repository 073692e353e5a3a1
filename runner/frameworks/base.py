"""The framework seam, and the adapter of a recipe that is only its run script (`framework = "script"`).

Each method's default is what the runner may assume of a trainer it knows nothing about: no
framework preflight checks, no lint traps, no memory settings beyond the defaults, metrics keyed
as the gate's collector reads them, and no notes for the gate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.model.memory import MemorySettings
from runner.recipe import Table

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from runner.checks import Check
    from runner.model.finding import Finding
    from runner.plan.options import RunOptions
    from runner.plan.spec import Job, Launch, Paths
    from runner.recipe import Recipe


def fatal_reason(table: Sequence[tuple[str | re.Pattern, str]], line: str) -> tuple[str | re.Pattern, str] | None:
    """The first (pattern, reason) of a FATAL_LOG_LINES table found in `line`: one matcher for the
    run's log watcher (runner/launch/watch.py, which passes the patterns compiled) and for checks
    that read the same lines."""
    return next(((pattern, reason) for pattern, reason in table if re.search(pattern, line)), None)


class Framework:
    NAME = "script"
    # the schema of recipe.toml's [<NAME>] table (runner/recipe.py Table): no keys unless an adapter says
    TABLE: type[Table] = Table
    # True: render() writes the launch from typed values (the recipe's run.sh is then its frozen
    # rendering); False: the recipe's own run script is the launch (this base adapter)
    renders = False
    # preflight checks this framework adds to every backend's list (names `--skip-preflight` takes)
    PREFLIGHT: tuple[str, ...] = ()
    # metric domains the trainer writes, and the step key each is placed by (runner/gate/metrics.py)
    METRIC_DOMAINS: tuple[str, ...] = ()
    STEP_KEYS: dict[str, str] = {}
    # (regex, reason): a job log line that means the run is lost; the runner ends the run at the first
    FATAL_LOG_LINES: tuple[tuple[str, str], ...] = ()

    def options(self, recipe: Recipe) -> Any:
        """The recipe's [<NAME>] table, typed by TABLE."""
        from runner.recipe import framework_table

        return framework_table(recipe, self.TABLE)

    def render(self, opts: RunOptions, paths: Paths, environ: Mapping[str, str], *,
               inherit_env: bool = True) -> Job:
        """The launch of these options: entry point, argument blocks, job environment.

        A recipe that is only its run script (this base adapter) runs that script as its job, with
        the RECIPE_* variables the runner exports; its own arguments are its business."""
        from runner.plan.spec import Job

        script = opts.recipe.path("run_script")
        return Job(entrypoint=["bash", str(script)], blocks=[], job_env={}, mkdirs=[], ray_gpus_per_node=0,
                   ray_total_gpus=0, via_ray=False)

    def checkpoints(self, output_dir: Path) -> tuple[Path | None, list[Path]]:
        """For `recipe resume`: the newest complete checkpoint a run left under its output dir (the
        trainer's --load reads the directory holding it and picks the same one), and the incomplete
        ones newer than it; (None, []) when there is none or this framework cannot resume."""
        return None, []

    def cannot_resume(self, argv: list[str]) -> str | None:
        """Why a run of this argv cannot be continued exactly from its checkpoint, or None."""
        return None

    def preflight_check(self, name: str, launch: Launch) -> Check | None:
        """Run check `name` for `launch`; None when this framework has no such check."""
        return None

    def model_args_are_flags(self, model_args: list[str]) -> bool:
        """Does the recipe's model args file hold this framework's model flags (lint compares them)?"""
        return False

    def lint_traps(self, argv: list[str], model_args: list[str], cfg: dict[str, Any] | None,
                   moe: bool) -> list[Finding]:
        """Known traps of this framework in the full train argv."""
        return []

    def adjust_model_findings(self, findings: list[Finding], argv: list[str] | None,
                              cfg: dict[str, Any] | None = None) -> list[Finding]:
        """Restate the model rules' findings for what reaches the model in this launch (argv, and the
        checkpoint's config.json where known)."""
        return findings

    def memory_settings(self, argv: list[str], max_tokens_per_gpu: int | None = None) -> MemorySettings:
        return MemorySettings(max_tokens_per_gpu=max_tokens_per_gpu or MemorySettings.max_tokens_per_gpu)

    def installed_here(self) -> bool:
        """Is this framework installed at the place its image puts it (we run inside that image)?"""
        return False


ADAPTER = Framework()
