"""plan.json: a launch frozen into its run directory before anything runs, and read back as data.

Written by `recipe run` (every backend); read by `recipe exec` (the job's side of a docker or Slurm
run), which carries the launch out, and by `recipe replay`, which compares with it. The paths in it
are the ones the job sees (a container's mounts), taken from the plan's own script environment.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from runner.console import safe
from runner.errors import UsageError
from runner.gate.files import RECORD_MAX, read_regular
from runner.paths import bundle_root
from runner.plan.spec import PLAN_VERSION, Launch

FILE = "plan.json"

class _Strict(BaseModel):
    # unknown keys refused (a newer runner's, or a planted one), no value coerced to another type
    model_config = ConfigDict(extra="forbid", strict=True)


class PlanOptions(_Strict):
    cell: str
    nodes: int
    gpus_per_node: int
    inputs_dir: str
    model_dir: str
    data_dir: str
    seed: int
    rollout_seed: int
    num_rollout: int
    deterministic: bool


class PlanRun(_Strict):
    skip: list[str]
    rehash: bool
    gate: bool


class PlanBlock(_Strict):
    name: str
    args: list[str]


class PlanRay(_Strict):
    gpus_per_node: int
    total_gpus: int


class PlanFile(_Strict):
    """plan.json's schema: Plan.as_dict and plan_document's additions."""

    version: int
    recipe: str
    cell: str
    layout: dict
    nodes: int
    gpus_per_node: int
    argv: list[str]
    env: dict[str, str]
    entrypoint: list[str]
    blocks: list[PlanBlock]
    mkdirs: list[str]
    ray: PlanRay | None
    commands: list[list[str]]
    script_env: dict[str, str]
    image: str
    backend: str
    run_id: str
    run_dir: str
    output_dir: str
    run_script: str
    options: PlanOptions
    # written since `recipe exec`, which needs them; replay also reads plans from before
    secret_names: list[str] | None = None
    run: PlanRun | None = None
    bundle_dir: str | None = None


def plan_document(launch: Launch) -> dict:
    """plan.json: the resolved launch (typed options, the argv, the job and script environments, the
    commands, the script that runs them, the checks to skip), as the job sees it."""
    o, env = launch.options, launch.plan.script_env
    run_dir = env["RECIPE_RUN_DIR"]
    return {**launch.plan.as_dict(), "image": launch.image, "backend": launch.backend,
            "run_id": launch.run_id, "run_dir": run_dir, "output_dir": env["RECIPE_OUTPUT_DIR"],
            "run_script": str(Path(run_dir) / "run.sh"),
            "options": {"cell": o.cell.name, "nodes": o.nodes, "gpus_per_node": o.gpus_per_node,
                        "inputs_dir": env["RECIPE_INPUTS_DIR"], "model_dir": env["RECIPE_MODEL_DIR"],
                        "data_dir": env["RECIPE_DATA_DIR"],
                        "seed": o.seed, "rollout_seed": o.rollout_seed, "num_rollout": o.num_rollout,
                        "deterministic": o.deterministic},
            "secret_names": list(launch.plan.secret_names),
            "run": {"skip": sorted(launch.skip), "rehash": launch.rehash, "gate": launch.gate},
            # where the job finds the bundle (a container's copy): replay compares the rest across it
            "bundle_dir": str(launch.view.bundle if launch.view else bundle_root())}


def read_plan(run_dir: Path, *, complete: bool = True) -> dict:
    """The plan.json of `run_dir`: a regular file inside it, of at most RECORD_MAX bytes, of this
    PLAN_VERSION, of PlanFile's keys and types; else a one-line UsageError (exit 2) naming the file.
    complete=False: a plan written before `recipe exec` (without secret_names, run, bundle_dir)."""
    from runner.recipe import typed

    path = Path(run_dir) / FILE
    try:
        raw = read_regular(path, root=run_dir, limit=RECORD_MAX, what="plan")
    except FileNotFoundError:
        raise UsageError(f"{safe(path)}: no plan here; not a run directory `recipe run` froze a launch into") \
            from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{safe(path)}: not valid JSON ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise UsageError(f"{safe(path)}: key 'version' {safe(repr(found))} is not {PLAN_VERSION}, the plan "
                         "version this runner reads")
    plan = typed(doc, PlanFile, Path(safe(path)))
    missing = [k for k in ("secret_names", "run", "bundle_dir") if getattr(plan, k) is None]
    if complete and missing:
        raise UsageError(f"{safe(path)}: key '{missing[0]}' missing; written by a runner before `recipe exec`")
    return doc


def launch_of(doc: dict, run_dir: Path) -> Launch:
    """The Launch a read plan.json describes, as the job sees it: its recipe from this bundle, its
    options as typed values (not from this environment), its Plan as written (not rendered again)."""
    from runner.plan.options import RunOptions
    from runner.plan.spec import Plan
    from runner.recipe import load_recipe
    from runner.secrets import present_secret_names

    where = safe(Path(run_dir) / FILE)
    if Path(doc["run_dir"]) != Path(run_dir).resolve():
        raise UsageError(f"{where}: key 'run_dir' {safe(doc['run_dir'])!r} is not the directory it was read from "
                         f"({safe(run_dir)})")
    recipe = load_recipe(doc["recipe"])
    o = doc["options"]
    opts = RunOptions.resolve(recipe, {**o, "inputs_dir": Path(o["inputs_dir"]), "model_dir": Path(o["model_dir"]),
                                       "data_dir": Path(o["data_dir"]), "output_dir": Path(doc["output_dir"]),
                                       "image": doc["image"]})   # not from_env: the plan is the whole launch
    run = doc["run"]
    # backend local: here, where `recipe exec` runs, the script runs as a local run's does
    return Launch(options=opts, plan=Plan.from_dict(doc), run_id=doc["run_id"], run_dir=Path(run_dir).resolve(),
                  backend="local", secret_names=present_secret_names(), skip=set(run["skip"]),
                  rehash=run["rehash"], gate=run["gate"])
