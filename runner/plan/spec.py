"""What a launch is: the Plan a framework adapter renders and the Launch every backend receives.

Typed data only; runner/plan/render.py renders it (a layer above the framework adapters, which
read these types), runner/plan/script.py turns it into the bash script that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.plan.options import RunOptions
from runner.recipe import Cell, Recipe

PLAN_VERSION = 1


@dataclass(frozen=True)
class Paths:
    """Where one launch reads and writes. In the frozen rendering of a recipe's run.sh each is a
    placeholder (runner/plan/script.py turns it into the shell variable a user sets by hand)."""

    run_id: str
    run_dir: str
    output_dir: str
    model_dir: str
    data_dir: str
    recipe_dir: str  # a recipe's own entry point lives here
    bundle: str  # the bundle root (never on the job's PYTHONPATH)


@dataclass(frozen=True)
class Job:
    """What a framework adapter renders: the trainer's entry point and argument blocks, the job's
    environment (what Ray gives the trainer), and the directories to make before it starts."""

    entrypoint: list[str]
    blocks: list[tuple[str, list[str]]]  # (purpose, flags): model, ckpt, rollout, ...
    job_env: dict[str, str]
    mkdirs: list[str]
    ray_gpus_per_node: int  # what `ray start --num-gpus` offers on the head
    ray_total_gpus: int  # what the cluster must have before the job is submitted
    via_ray: bool = True  # False: the entry point runs as it is (a recipe that is only its run script)
    script_env: dict[str, str] = field(default_factory=dict)  # the adapter's own settings of the lifecycle


@dataclass(frozen=True)
class JobView:
    """Where the job of a wrapped launch (a container) sees its files, where that is not where the
    host sees them: the plan is rendered with these, the backend mounts the host's there."""

    inputs_dir: Path
    output_dir: Path
    run_dir: Path
    bundle: Path  # the bundle root inside the image


@dataclass
class Plan:
    recipe: str
    cell: str
    layout: dict
    nodes: int
    gpus_per_node: int
    script_env: dict[str, str]  # variables the run script exports (the Ray lifecycle reads its RECIPE_*)
    blocks: list[tuple[str, list[str]]]
    job_env: dict[str, str]  # the job's environment; secrets only as "$NAME"
    entrypoint: list[str]
    mkdirs: list[str] = field(default_factory=list)
    ray_gpus_per_node: int = 0
    ray_total_gpus: int = 0
    via_ray: bool = True
    secret_names: list[str] = field(default_factory=list)  # passed by name: inherited, never written

    @property
    def argv(self) -> list[str]:
        """The trainer's arguments (after the entry point), block after block."""
        return [w for _, words in self.blocks for w in words]

    @argv.setter
    def argv(self, words: list[str]) -> None:
        """An argv given whole (a test planting a flag) is one block."""
        self.blocks = [("argv", list(words))]

    @property
    def runtime_env(self) -> dict[str, str]:
        """The job environment Ray's runtime env carries: the plan's, secrets left out (they reach the
        job from the environment `ray start` inherits, never from a file)."""
        return {k: v for k, v in self.job_env.items() if k not in self.secret_names}

    @property
    def commands(self) -> list[list[str]]:
        """The trainer's command as the run script starts it: as a Ray job, or as it is."""
        job = [*self.entrypoint, *self.argv]
        if not self.via_ray:
            return [job]
        return [["ray", "job", "submit", "--submission-id", self.script_env.get("RECIPE_RUN_ID", ""), "--", *job]]

    @property
    def programs(self) -> list[str]:
        """Programs the run script calls by name (the `packages` check looks for them on PATH)."""
        ray = {"ray", "setsid"} if self.via_ray else set()
        return sorted({"bash", *ray, *self.entrypoint[:1]})

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        """The Plan of a plan.json (runner/plan/document.py read and type-checked it)."""
        ray = d["ray"] or {}
        return cls(recipe=d["recipe"], cell=d["cell"], layout=d["layout"], nodes=d["nodes"],
                   gpus_per_node=d["gpus_per_node"], script_env=d["script_env"],
                   blocks=[(b["name"], b["args"]) for b in d["blocks"]], job_env=d["env"],
                   entrypoint=d["entrypoint"], mkdirs=d["mkdirs"], ray_gpus_per_node=ray.get("gpus_per_node", 0),
                   ray_total_gpus=ray.get("total_gpus", 0), via_ray=d["ray"] is not None,
                   secret_names=d["secret_names"])

    def as_dict(self) -> dict:
        return {"version": PLAN_VERSION, "recipe": self.recipe, "cell": self.cell, "layout": self.layout,
                "nodes": self.nodes, "gpus_per_node": self.gpus_per_node, "argv": self.argv, "env": self.job_env,
                "entrypoint": self.entrypoint, "blocks": [{"name": n, "args": a} for n, a in self.blocks],
                "mkdirs": self.mkdirs, "ray": {"gpus_per_node": self.ray_gpus_per_node,
                                               "total_gpus": self.ray_total_gpus} if self.via_ray else None,
                "commands": self.commands, "script_env": self.script_env}


@dataclass
class Launch:
    """A resolved launch: the options, the plan, and where this run's files go. Every backend (local,
    docker, slurm) receives the same Launch and differs only in how the container and the Ray cluster
    are brought up; the argv and job environment are the Plan's."""

    options: RunOptions
    plan: Plan
    run_id: str
    run_dir: Path
    backend: str
    secret_names: list[str] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)
    rehash: bool = False  # the inputs check reads every file, trusting nothing the verified-inputs cache says
    gate: bool = True  # evaluate the expected-metrics gate after the run (--no-gate: False)
    verbose: bool = False  # the console shows the trainer's own output too, not only the runner's lines
    # What the backend's preflight found and its commands must then use (docker: the image chosen
    # from its labels), keyed by backend; carried here rather than in module globals.
    found: dict = field(default_factory=dict)
    view: JobView | None = None  # where a container's job sees the files (None: where this host does)

    @property
    def recipe(self) -> Recipe:
        return self.options.recipe

    @property
    def cell(self) -> Cell:
        return self.options.cell

    @property
    def nodes(self) -> int:
        return self.options.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.options.gpus_per_node

    @property
    def inputs_dir(self) -> Path:
        return self.options.inputs_dir

    @property
    def image(self) -> str:
        return self.options.image

    @property
    def output_dir(self) -> Path:
        return self.options.output_for(self.run_dir)

    @property
    def script_env(self) -> dict[str, str]:
        """The variables the run script exports (no secrets)."""
        return self.plan.script_env


def argv_lines(argv: list[str]) -> list[str]:
    """The argv as one flag (with its values) per line: how plans and snapshots show it."""
    lines: list[list[str]] = []
    for word in argv:
        if word.startswith("--") or not lines:
            lines.append([word])
        else:
            lines[-1].append(word)
    return [" ".join(line) for line in lines]
