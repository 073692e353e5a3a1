"""plan.json: a launch frozen into its run directory before anything runs, and read back as data.

Written by `recipe run` (every backend); read by `recipe exec` (the job's side of a docker or Slurm
run), which carries the launch out, and by `recipe replay`, which compares with it. The paths in it
are the ones the job sees (a container's mounts), taken from the plan's own script environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.console import safe
from runner.errors import UsageError
from runner.gate.files import RECORD_MAX, read_regular
from runner.paths import bundle_root
from runner.plan.spec import PLAN_VERSION, Launch

FILE = "plan.json"

# Every key a plan.json holds, with its JSON type: an allowlist, so that a key this runner does not
# know (a newer runner's, or a planted one) is refused rather than ignored.
KEYS: dict[str, type | tuple[type, ...]] = {
    "version": int, "recipe": str, "cell": str, "layout": dict, "nodes": int, "gpus_per_node": int,
    "argv": list, "env": dict, "entrypoint": list, "blocks": list, "mkdirs": list, "ray": (dict, type(None)),
    "commands": list, "script_env": dict, "image": str, "backend": str, "run_id": str, "run_dir": str,
    "output_dir": str, "run_script": str, "options": dict, "secret_names": list, "run": dict, "bundle_dir": str,
}
OPTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "cell": str, "nodes": int, "gpus_per_node": int, "inputs_dir": str, "model_dir": str, "data_dir": str,
    "seed": int, "rollout_seed": int, "num_rollout": int, "deterministic": bool}
RUN_KEYS: dict[str, type | tuple[type, ...]] = {"skip": list, "rehash": bool, "gate": bool}


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


def _typed(where: str, doc: Any, keys: dict[str, type | tuple[type, ...]], required: bool = True) -> None:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: expected a JSON object")
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise UsageError(f"{where}: unknown key '{safe(unknown[0])}'; not a plan this runner wrote")
    for key, kind in keys.items():
        if key not in doc:
            if required:
                raise UsageError(f"{where}: key '{key}' missing; not a plan this runner wrote")
            continue
        v = doc[key]
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is int):
            raise UsageError(f"{where}: key '{key}' has the wrong type ({type(v).__name__})")


def read_plan(run_dir: Path, *, complete: bool = True) -> dict:
    """The plan.json of `run_dir`: a regular file inside it, of at most RECORD_MAX bytes, of this
    PLAN_VERSION, every key known and typed; else a one-line UsageError (exit 2) naming the file.
    complete=False: plans written before `options`/`run` were recorded (replay reads those too)."""
    path = Path(run_dir) / FILE
    where = safe(path)
    raw = read_regular(path, root=run_dir, limit=RECORD_MAX, what="plan")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{where}: not valid JSON ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise UsageError(f"{where}: key 'version' {safe(repr(found))} is not {PLAN_VERSION}, the plan version "
                         "this runner reads")
    _typed(where, doc, KEYS, required=complete)
    if complete:
        _typed(f"{where} (options)", doc["options"], OPTION_KEYS)
        _typed(f"{where} (run)", doc["run"], RUN_KEYS)
        if not all(isinstance(s, str) for s in doc["run"]["skip"] + doc["secret_names"] + doc["entrypoint"]):
            raise UsageError(f"{where}: 'run.skip', 'secret_names' and 'entrypoint' must hold strings")
        for b in doc["blocks"]:
            if not (isinstance(b, dict) and set(b) == {"name", "args"} and isinstance(b["name"], str)
                    and isinstance(b["args"], list) and all(isinstance(a, str) for a in b["args"])):
                raise UsageError(f"{where}: key 'blocks' holds something other than {{name, args}} of strings")
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
                                       "image": doc["image"]}, environ={})
    run = doc["run"]
    # backend local: here, where `recipe exec` runs, the script runs as a local run's does
    return Launch(options=opts, plan=Plan.from_dict(doc), run_id=doc["run_id"], run_dir=Path(run_dir).resolve(),
                  backend="local", secret_names=present_secret_names(), skip=set(run["skip"]),
                  rehash=run["rehash"], gate=run["gate"])
