"""The resolved launch of a recipe, read from its run script's dry run.

The run script is the only renderer of the launch: `plan_for` runs it with RECIPE_DRY_RUN=1 and
reads back the commands it prints ("+ " and printf %q words, read exactly by plan/shellwords.py).
So the argv that `recipe plan` shows is, by construction, the argv that `recipe run` executes.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import EXIT_USAGE, RecipeError, UsageError
from runner.model.parallel import Architecture, layout_errors
from runner.plan import shellwords
from runner.plan.options import FORWARDED_ENV, RunOptions
from runner.recipe import Cell, Recipe
from runner.records.rundirs import plan_run_dir
from runner.secrets import present_secret_names
from runner.shellhelpers import SCRIPT_ENV_KEYS

# Variables of the caller's environment a run script may read (besides RECIPE_*).
# The forwarded NCCL/Gloo settings and PYTHONPATH go into the job environment when set.
PASSTHROUGH = ("NCCL_NVLS_ENABLE", "MASTER_ADDR", *FORWARDED_ENV, "PYTHONPATH")


@dataclass
class Plan:
    recipe: str
    cell: str
    layout: dict
    nodes: int
    gpus_per_node: int
    script_env: dict[str, str]  # RECIPE_* variables given to the run script
    commands: list[list[str]]  # what the run script executes, in order
    argv: list[str]  # the trainer's arguments (after the entry point script)
    job_env: dict[str, str]  # the job's environment (what Ray gives the trainer); secrets only as "$NAME"
    entrypoint: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"recipe": self.recipe, "cell": self.cell, "layout": self.layout, "nodes": self.nodes,
                "gpus_per_node": self.gpus_per_node, "argv": self.argv, "env": self.job_env,
                "entrypoint": self.entrypoint, "commands": self.commands, "script_env": self.script_env}


def check_layout(recipe: Recipe, cell: Cell, nodes: int, gpus_per_node: int) -> None:
    """Raise a UsageError naming the broken rule and the cells that would work."""
    world = nodes * gpus_per_node
    if world == 0:  # CPU recipes: no model parallelism to check
        return
    try:
        arch = Architecture.from_model_args(recipe.model_args())
    except ValueError as e:
        raise UsageError(f"{recipe.path('model_args')}: {e}") from None
    errs = layout_errors(arch, cell.layout, world)
    if errs:
        ok = [c.name for c in recipe.cells.values() if not layout_errors(arch, c.layout, world)]
        raise UsageError(f"cell '{cell.name}' ({cell.layout.label()}) is invalid on {nodes}x{gpus_per_node} "
                         f"GPUs: {'; '.join(errs)}; cells valid there: {', '.join(ok) or 'none'}")


def dry_run(recipe: Recipe, env: dict[str, str]) -> list[list[str]]:
    """Run the run script with RECIPE_DRY_RUN=1 and return the commands it prints.

    Any failure of the dry run is the launch's own fault (a missing script, a value it refused, a
    line no shell could have printed): exit 2, naming the script.
    """
    script = recipe.path("run_script")
    if not script.is_file():
        raise UsageError(f"{script}: run script not found (recipe.toml [files] run_script)")
    # The same environment `recipe run` gives the script (script.run_script): the caller's RECIPE_*
    # settings (RECIPE_WANDB_PROJECT, RECIPE_MILES_DIR...) reach both, so the plan is the run.
    base = {k: v for k, v in os.environ.items() if k in (*SCRIPT_ENV_KEYS, *PASSTHROUGH)
            or k.startswith("RECIPE_")}
    for k in PASSTHROUGH:
        if any(ch in base.get(k, "") for ch in "\n\r\0"):
            raise UsageError(f"{k}={base[k]!r}: a newline or NUL byte has no place in it")
    try:
        proc = subprocess.run(["bash", str(script)], env={**base, **env, "RECIPE_DRY_RUN": "1"},
                              capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{script}: dry run (RECIPE_DRY_RUN=1) did not finish within 60 s") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        last = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RecipeError(f"{script}: dry run failed with exit {proc.returncode}: {last}", EXIT_USAGE)
    commands = []
    for n, line in enumerate(proc.stdout.split(b"\n"), 1):
        if line.startswith(b"+ "):
            try:
                commands.append(shellwords.split(line[2:]))
            except shellwords.ShellWordsError as e:
                raise UsageError(f"{script}: dry run line {n} is not printf %q output: {e}") from None
    return commands


def _job_submit(commands: list[list[str]]) -> list[str] | None:
    for cmd in commands:
        if cmd[:3] == ["ray", "job", "submit"]:
            return cmd
    return None


def _runtime_env(words: list[str]) -> dict[str, str]:
    """env_vars of `ray job submit --runtime-env-json JSON`: a JSON object of strings, or a usage error."""
    try:
        doc = json.loads(words[0]) if words else None
    except json.JSONDecodeError as e:
        raise UsageError(f"the run script's --runtime-env-json is not valid JSON ({e.msg} at {e.pos})") from None
    env = doc.get("env_vars") if isinstance(doc, dict) else None
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise UsageError(f"the run script's --runtime-env-json has no env_vars object of strings: {words[:1]}")
    return env


def split_job(commands: list[list[str]], entry_suffix: str = ".py") -> tuple[dict[str, str], list[str], list[str]]:
    """(job env, entry point, trainer argv) from the `ray job submit` command."""
    submit = _job_submit(commands)
    env: dict[str, str] = {}
    if submit is not None:
        if "--runtime-env-json" in submit:
            env = _runtime_env(submit[submit.index("--runtime-env-json") + 1:][:1])
        job = submit[submit.index("--") + 1:] if "--" in submit else []
    else:  # a recipe that runs its trainer directly: the last command with a Python entry point
        job = next((c for c in reversed(commands) if any(w.endswith(entry_suffix) for w in c)), [])
        if not job:
            return {}, [], []
    # entry point: interpreter + script (the first word ending in .py), or the first word
    cut = next((i + 1 for i, w in enumerate(job) if w.endswith(entry_suffix)), 1)
    return env, job[:cut], job[cut:]


def plan_for(opts: RunOptions, *, run_dir: Path | None = None, run_id: str = "plan",
             extra_env: dict[str, str] | None = None) -> Plan:
    """The resolved launch of these options: the run script's dry run, parsed."""
    check_layout(opts.recipe, opts.cell, opts.nodes, opts.gpus_per_node)
    run_dir = (run_dir or plan_run_dir(opts.recipe.name, run_id)).resolve()
    env = opts.script_env(run_dir, run_id)
    env.update(extra_env or {})
    commands = dry_run(opts.recipe, env)
    job_env, entry, argv = split_job(commands)
    # Secrets reach the job through the environment Ray inherits; show them by name only.
    job_env.update({name: f"${name}" for name in present_secret_names()})
    return Plan(recipe=opts.recipe.name, cell=opts.cell.name, layout=opts.cell.as_dict(), nodes=opts.nodes,
                gpus_per_node=opts.gpus_per_node, script_env=env, commands=commands, argv=argv, job_env=job_env,
                entrypoint=entry)


def render_plan(recipe: Recipe, cell_name: str | None = None, *, run_dir: Path | None = None, run_id: str = "plan",
                extra_env: dict[str, str] | None = None, **cli) -> Plan:
    """plan_for the options `cli` (flag names as RunOptions.resolve takes them) give with this environment."""
    opts = RunOptions.resolve(recipe, {"cell": cell_name, **cli})
    return plan_for(opts, run_dir=run_dir, run_id=run_id, extra_env=extra_env)


def argv_lines(argv: list[str]) -> list[str]:
    """The argv as one flag (with its values) per line: how plans and snapshots show it."""
    lines: list[list[str]] = []
    for word in argv:
        if word.startswith("--") or not lines:
            lines.append([word])
        else:
            lines[-1].append(word)
    return [" ".join(line) for line in lines]

