"""The resolved launch of a recipe, read from its run script's dry run.

The run script is the only renderer of the launch: `render_plan` runs it with RECIPE_DRY_RUN=1
and parses the commands it prints ("+ " followed by printf %q words). So the argv that
`recipe plan` shows is, by construction, the argv that `recipe run` executes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RecipeError, UsageError
from runner.inputs import layout as inputs_mod
from runner.model.parallel import Architecture, Layout, layout_errors
from runner.recipe import Cell, Recipe
from runner.secrets import present_secret_names

# Variables of the caller's environment a run script may read (besides RECIPE_*).
# The NCCL/Gloo interface and debug settings and PYTHONPATH go into the job environment when set.
PASSTHROUGH = ("NCCL_NVLS_ENABLE", "MASTER_ADDR", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG",
               "NCCL_DEBUG_FILE", "PYTHONPATH")


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
    env: dict[str, str]  # the job's environment; secrets only as "$NAME"
    entrypoint: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"recipe": self.recipe, "cell": self.cell, "layout": self.layout, "nodes": self.nodes,
                "gpus_per_node": self.gpus_per_node, "argv": self.argv, "env": self.env,
                "entrypoint": self.entrypoint, "commands": self.commands, "script_env": self.script_env}


def check_layout(recipe: Recipe, cell: Cell, nodes: int, gpus_per_node: int) -> None:
    """Raise a UsageError naming the broken rule and the cells that would work."""
    if nodes < 1:
        raise UsageError(f"--nodes must be >= 1, got {nodes}")
    if gpus_per_node < 0:
        raise UsageError(f"--gpus-per-node must be >= 0, got {gpus_per_node}")
    world = nodes * gpus_per_node
    if world == 0:  # CPU recipes: no model parallelism to check
        return
    try:
        arch = Architecture.from_model_args(recipe.model_args())
    except ValueError as e:
        raise UsageError(f"{recipe.path('model_args')}: {e}") from None
    errs = layout_errors(arch, Layout.of(cell), world)
    if errs:
        ok = [c.name for c in recipe.cells.values() if not layout_errors(arch, Layout.of(c), world)]
        raise UsageError(f"cell '{cell.name}' ({Layout.of(cell).label()}) is invalid on {nodes}x{gpus_per_node} "
                         f"GPUs: {'; '.join(errs)}; cells valid there: {', '.join(ok) or 'none'}")


def script_env(recipe: Recipe, cell: Cell, *, nodes: int, gpus_per_node: int, inputs_dir: Path,
               model_dir: Path | None, data_dir: Path | None, output_dir: Path, run_dir: Path, run_id: str,
               seed: int | None = None, rollout_seed: int | None = None, num_rollout: int | None = None,
               deterministic: bool = False) -> dict[str, str]:
    d = recipe.run_defaults
    env = {
        "RECIPE_NAME": recipe.name,
        "RECIPE_CELL": cell.name,
        "RECIPE_INPUTS_DIR": str(inputs_dir),
        "RECIPE_MODEL_DIR": str(model_dir or inputs_mod.model_dir(recipe, inputs_dir)),
        "RECIPE_DATA_DIR": str(data_dir or inputs_mod.data_dir(recipe, inputs_dir)),
        "RECIPE_OUTPUT_DIR": str(output_dir),
        "RECIPE_RUN_DIR": str(run_dir),
        "RECIPE_RUN_ID": run_id,
        "RECIPE_NODES": str(nodes),
        "RECIPE_GPUS_PER_NODE": str(gpus_per_node),
        "RECIPE_NUM_ROLLOUT": str(num_rollout if num_rollout is not None else d.get("num_rollout", 1)),
        "RECIPE_SEED": str(seed if seed is not None else d.get("seed", 1234)),
        "RECIPE_ROLLOUT_SEED": str(rollout_seed if rollout_seed is not None else d.get("rollout_seed", 42)),
        "RECIPE_DETERMINISTIC": "1" if deterministic else "0",
    }
    env.update(cell.env())
    for k, v in env.items():
        if any(ch in v for ch in "\n\r\0"):
            raise UsageError(f"{k}: value contains a newline or NUL byte: {v!r}")
    return env


def dry_run(recipe: Recipe, env: dict[str, str]) -> list[list[str]]:
    """Run the run script with RECIPE_DRY_RUN=1 and return the commands it prints."""
    script = recipe.path("run_script")
    # The same environment `recipe run` gives the script (execute.run_script): the caller's RECIPE_*
    # settings (RECIPE_WANDB_PROJECT, RECIPE_MILES_DIR...) reach both, so the plan is the run.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", *PASSTHROUGH)
            or k.startswith("RECIPE_")}
    proc = subprocess.run(["bash", str(script)], env={**base, **env, "RECIPE_DRY_RUN": "1"},
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RecipeError(f"{script}: dry run failed with exit {proc.returncode}: {last}", proc.returncode)
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def _job_submit(commands: list[list[str]]) -> list[str] | None:
    for cmd in commands:
        if cmd[:3] == ["ray", "job", "submit"]:
            return cmd
    return None


def split_job(commands: list[list[str]], entry_suffix: str = ".py") -> tuple[dict[str, str], list[str], list[str]]:
    """(job env, entry point, trainer argv) from the `ray job submit` command."""
    submit = _job_submit(commands)
    env: dict[str, str] = {}
    if submit is not None:
        if "--runtime-env-json" in submit:
            env = json.loads(submit[submit.index("--runtime-env-json") + 1]).get("env_vars", {})
        job = submit[submit.index("--") + 1:]
    else:  # a recipe that runs its trainer directly: the last command with a Python entry point
        job = next((c for c in reversed(commands) if any(w.endswith(entry_suffix) for w in c)), [])
        if not job:
            return {}, [], []
    # entry point: interpreter + script (the first word ending in .py), or the first word
    cut = next((i + 1 for i, w in enumerate(job) if w.endswith(entry_suffix)), 1)
    return env, job[:cut], job[cut:]


def render_plan(recipe: Recipe, cell_name: str | None = None, *, nodes: int | None = None,
                gpus_per_node: int | None = None, inputs_dir: Path | None = None,
                model_dir: Path | None = None, data_dir: Path | None = None, output_dir: Path | None = None,
                run_dir: Path | None = None, run_id: str = "plan", seed: int | None = None,
                rollout_seed: int | None = None, num_rollout: int | None = None,
                deterministic: bool = False, extra_env: dict[str, str] | None = None) -> Plan:
    cell = recipe.cell(cell_name)
    hw = recipe.hardware
    nodes = hw.get("nodes", 1) if nodes is None else nodes
    gpus_per_node = hw.get("gpus_per_node", 0) if gpus_per_node is None else gpus_per_node
    check_layout(recipe, cell, nodes, gpus_per_node)
    inputs_dir = inputs_mod.inputs_root(recipe, inputs_dir)
    run_dir = (run_dir or Path.cwd() / "runs" / f"{recipe.name}-{run_id}").resolve()
    output_dir = (output_dir or run_dir / "output").resolve()  # every run owns its checkpoints
    env = script_env(recipe, cell, nodes=nodes, gpus_per_node=gpus_per_node, inputs_dir=inputs_dir,
                     model_dir=model_dir and model_dir.resolve(), data_dir=data_dir and data_dir.resolve(),
                     output_dir=output_dir, run_dir=run_dir, run_id=run_id, seed=seed,
                     rollout_seed=rollout_seed, num_rollout=num_rollout, deterministic=deterministic)
    env.update(extra_env or {})
    commands = dry_run(recipe, env)
    job_env, entry, argv = split_job(commands)
    # Secrets reach the job through the environment Ray inherits; show them by name only.
    job_env.update({name: f"${name}" for name in present_secret_names()})
    return Plan(recipe=recipe.name, cell=cell.name, layout=cell.as_dict(), nodes=nodes,
                gpus_per_node=gpus_per_node, script_env=env, commands=commands, argv=argv, env=job_env,
                entrypoint=entry)


def argv_lines(argv: list[str]) -> list[str]:
    """The argv as one flag (with its values) per line: how plans and snapshots show it."""
    lines: list[list[str]] = []
    for word in argv:
        if word.startswith("--") or not lines:
            lines.append([word])
        else:
            lines[-1].append(word)
    return [" ".join(line) for line in lines]

