"""The options of one launch, resolved once, in one place, for `recipe run`, `plan` and `sbatch`.

Precedence, for every option: the command line > its RECIPE_* environment variable (the same name
the run script reads) > recipe.toml > nothing. click applies the first two (each option's envvar=, its
type's bounds); RunOptions.resolve fills what neither gave from recipe.toml. There is no other
fallback: a value the recipe does not state is an error at load (runner/recipe.py), never a number
made up here.

    option           flag               variable               recipe.toml
    cell             --cell             RECIPE_CELL            default_cell
    nodes            --nodes            RECIPE_NODES           [hardware] nodes
    gpus_per_node    --gpus-per-node    RECIPE_GPUS_PER_NODE   [hardware] gpus_per_node
    inputs_dir       --inputs           RECIPE_INPUTS_DIR      [inputs] root, else ./inputs/NAME
    model_dir        --model-dir        RECIPE_MODEL_DIR       INPUTS/[model] dir
    data_dir         --data-dir         RECIPE_DATA_DIR        INPUTS/[data] dir
    output_dir       --output-dir       RECIPE_OUTPUT_DIR      RUN_DIR/output (every run owns its checkpoints)
    seed             --seed             RECIPE_SEED            [run] seed
    rollout_seed     --rollout-seed     RECIPE_ROLLOUT_SEED    [run] rollout_seed
    num_rollout      --num-rollout      RECIPE_NUM_ROLLOUT     [run] num_rollout
    deterministic    --[no-]deterministic RECIPE_DETERMINISTIC [run] deterministic
    image            --image            RECIPE_IMAGE           [image] reference
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from runner.errors import UsageError
from runner.inputs import layout as inputs_layout
from runner.paths import user_path
from runner.recipe import Cell, Recipe

# Bounds "beyond reason" on one Ray cluster of a recipe; the one place they are stated (sbatch and
# the shell helpers check only that a number is a number).
MAX_NODES = 64
MAX_GPUS_PER_NODE = 64
MAX_NUM_ROLLOUT = 10**7

ENV = {"cell": "RECIPE_CELL", "nodes": "RECIPE_NODES", "gpus_per_node": "RECIPE_GPUS_PER_NODE",
       "inputs_dir": "RECIPE_INPUTS_DIR", "model_dir": "RECIPE_MODEL_DIR", "data_dir": "RECIPE_DATA_DIR",
       "output_dir": "RECIPE_OUTPUT_DIR", "seed": "RECIPE_SEED", "rollout_seed": "RECIPE_ROLLOUT_SEED",
       "num_rollout": "RECIPE_NUM_ROLLOUT", "deterministic": "RECIPE_DETERMINISTIC", "image": "RECIPE_IMAGE"}
FLAG = {"cell": "--cell", "nodes": "--nodes", "gpus_per_node": "--gpus-per-node", "inputs_dir": "--inputs",
        "model_dir": "--model-dir", "data_dir": "--data-dir", "output_dir": "--output-dir", "seed": "--seed",
        "rollout_seed": "--rollout-seed", "num_rollout": "--num-rollout", "deterministic": "--deterministic",
        "image": "--image"}
# The network interfaces and NCCL's debug output: passed on, where set, into the trainer's job
# environment (runner/plan/jobenv.py) and into a docker container.
# On two nodes a wrong interface hangs NCCL. The one list of them.
FORWARDED_ENV = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_DEBUG_FILE")
# The caller's variables `recipe replay` re-applies from a record; every other recorded variable is
# ignored (an allowlist: a record is data, and what it names may not choose a program, a library, a
# search path or a check). Each of these changes the numbers a run computes and nothing else.
REPLAYED_ENV = ("PYTHONHASHSEED", "RECIPE_TORCH_THREADS", "CUBLAS_WORKSPACE_CONFIG", "NCCL_ALGO",
                "NVTE_ALLOW_NONDETERMINISTIC_ALGO", "NCCL_NVLS_ENABLE", "CUDA_DEVICE_MAX_CONNECTIONS")
# The integer options' click types: the one statement of their bounds, for the flags, the RECIPE_*
# variables (click parses both) and the values a record or a caller gives RunOptions.resolve.
INTS = {"nodes": click.IntRange(1, MAX_NODES), "gpus_per_node": click.IntRange(0, MAX_GPUS_PER_NODE),
        "seed": click.IntRange(0, 2**32 - 1), "rollout_seed": click.IntRange(0, 2**32 - 1),
        "num_rollout": click.IntRange(1, MAX_NUM_ROLLOUT)}
PATHS = ("inputs_dir", "model_dir", "data_dir", "output_dir")


@dataclass(frozen=True)
class RunOptions:
    recipe: Recipe
    cell: Cell
    nodes: int
    gpus_per_node: int
    inputs_dir: Path
    model_dir: Path
    data_dir: Path
    output_dir: Path | None  # None: RUN_DIR/output, decided once the run directory is
    seed: int
    rollout_seed: int
    num_rollout: int
    deterministic: bool
    image: str
    # the checkpoint directory of the run this one continues (`recipe resume`); no flag sets it
    resume_from: Path | None = None

    @classmethod
    def resolve(cls, recipe: Recipe, cli: Mapping[str, Any] | None = None, *, from_env: bool = False) -> RunOptions:
        """The options `cli` gives (None: not given), as click parsed them from the flags and RECIPE_*
        variables or as a caller or record states them, checked; recipe.toml for the rest. from_env: a
        launch with no command line of its own (lint's and doctor's rendering, a replay) takes the
        RECIPE_* variables too, below what `cli` gives."""
        given = {k: v for k, v in (cli or {}).items() if v is not None}
        unknown = set(given) - set(ENV)
        if unknown:
            raise TypeError(f"unknown run options: {sorted(unknown)}")
        if from_env:
            given = {**environment_options(), **given}
        given = {k: checked(k, v, FLAG[k]) for k, v in given.items()}
        cell = recipe.cell(given.get("cell"))
        hw, run = recipe.hardware, recipe.run_defaults
        inputs_dir = inputs_layout.inputs_root(recipe, given.get("inputs_dir"))
        return cls(
            recipe=recipe, cell=cell,
            nodes=given.get("nodes", hw.nodes), gpus_per_node=given.get("gpus_per_node", hw.gpus_per_node),
            inputs_dir=inputs_dir,
            model_dir=_abs(given.get("model_dir"), "--model-dir") or inputs_layout.model_dir(recipe, inputs_dir),
            data_dir=_abs(given.get("data_dir"), "--data-dir") or inputs_layout.data_dir(recipe, inputs_dir),
            output_dir=_abs(given.get("output_dir"), "--output-dir"),
            seed=given.get("seed", run.seed), rollout_seed=given.get("rollout_seed", run.rollout_seed),
            num_rollout=given.get("num_rollout", run.num_rollout),
            deterministic=given.get("deterministic", run.deterministic),
            image=given.get("image") or recipe.image)

    def output_for(self, run_dir: Path) -> Path:
        return self.output_dir or (Path(run_dir) / "output").resolve()

    def script_env(self, run_dir: Path, run_id: str) -> dict[str, str]:
        """The RECIPE_* variables the run script reads for this launch."""
        c = self.cell
        env = {
            "RECIPE_NAME": self.recipe.name,
            "RECIPE_CELL": self.cell.name,
            "RECIPE_INPUTS_DIR": str(self.inputs_dir),
            "RECIPE_MODEL_DIR": str(self.model_dir),
            "RECIPE_DATA_DIR": str(self.data_dir),
            "RECIPE_OUTPUT_DIR": str(self.output_for(run_dir)),
            "RECIPE_RUN_DIR": str(run_dir),
            "RECIPE_RUN_ID": run_id,
            "RECIPE_NODES": str(self.nodes),
            "RECIPE_GPUS_PER_NODE": str(self.gpus_per_node),
            "RECIPE_NUM_ROLLOUT": str(self.num_rollout),
            "RECIPE_SEED": str(self.seed),
            "RECIPE_ROLLOUT_SEED": str(self.rollout_seed),
            "RECIPE_DETERMINISTIC": "1" if self.deterministic else "0",
            # the cell's layout, as the run scripts read it
            "RECIPE_TP": str(c.tp), "RECIPE_PP": str(c.pp), "RECIPE_CP": str(c.cp), "RECIPE_EP": str(c.ep),
            "RECIPE_ETP": str(c.etp), "RECIPE_SP": "1" if c.sp else "0",
            "RECIPE_MAX_TOKENS_PER_GPU": str(c.max_tokens_per_gpu),
        }
        for k, v in env.items():
            clean(k, v)
        return env


def _abs(p: Any, what: str = "path") -> Path | None:
    return user_path(p, what) if p else None


def clean(name: str, value: str) -> str:
    """`value`, or a one-line usage error naming `name`: a control character (a newline, NUL, ESC; a tab
    aside) has no place in a launch's value, which reaches a shell script, Ray's runtime env JSON and
    the record."""
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
        raise UsageError(f"{name}={value!r}: a control character has no place in a launch's value")
    return value


def checked(key: str, value: Any, where: str) -> Any:
    """`value` of option `key` (given as `where`), or a one-line usage error naming it and what was expected."""
    if key in INTS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{where} {value!r}: expected an integer")
        try:
            return INTS[key].convert(value, None, None)
        except click.BadParameter as e:
            raise UsageError(f"{where}: {e.message}") from None
    if key in PATHS:
        clean(where, str(value))
    elif key in ("cell", "image"):
        if not isinstance(value, str) or not value or any(c.isspace() or c == "\0" for c in value):
            raise UsageError(f"{where} {value!r}: expected a name without spaces")
    return value


# ---- the one set of click options behind `run`, `plan` and `sbatch` ----------------------------

PathOpt = click.Path(path_type=Path, file_okay=False)
CLI_KEYS = tuple(ENV)


def _option(key: str, help_: str, type: click.ParamType | None = None):
    return click.option(FLAG[key], key, envvar=ENV[key], show_envvar=True, type=type or INTS.get(key), help=help_)


OPTIONS = [
    _option("cell", "Parallelism cell (default: the recipe's default cell)."),
    _option("nodes", "Number of nodes (default: the recipe's)."),
    _option("gpus_per_node", "GPUs per node (default: the recipe's)."),
    _option("inputs_dir", "Inputs root holding model/ and data/ (default: ./inputs/NAME).", type=PathOpt),
    _option("model_dir", "Override the model directory (default: INPUTS/model).", type=PathOpt),
    _option("data_dir", "Override the data directory (default: INPUTS/data).", type=PathOpt),
    _option("output_dir", "Checkpoints go here (default: RUN_DIR/output).", type=PathOpt),
    _option("seed", "--seed for the trainer (default: the recipe's)."),
    _option("rollout_seed", "--rollout-seed (default: the recipe's)."),
    _option("num_rollout", "Number of rollouts (default: the recipe's)."),
    click.option("--deterministic/--no-deterministic", "deterministic", default=None, envvar=ENV["deterministic"],
                 show_envvar=True, help="Deterministic training and inference, slower (default: the recipe's)."),
    _option("image", "Run in this image (NAME@sha256:...); recorded in run.json (default: the recipe's pin)."),
]


def run_options(f):
    """The launch options shared by `plan`, `run` and `sbatch`: they resolve to the same launch."""
    for opt in reversed(OPTIONS):
        f = opt(f)
    return f


def environment_options() -> dict[str, Any]:
    """The run options the RECIPE_* variables set, parsed by the same click options as the flags (with
    no command line: a launch that has none of its own)."""
    params = click.command("recipe")(run_options(lambda **kw: None)).make_context("recipe", []).params
    return {k: v for k, v in params.items() if v is not None}


def pop_cli(kw: dict[str, Any]) -> dict[str, Any]:
    """Take the run options out of a click command's keyword arguments."""
    return {k: kw.pop(k) for k in CLI_KEYS if k in kw}
