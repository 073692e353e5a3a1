"""`recipe replay RUN_DIR`: re-execute exactly what a run recorded, then compare the metrics.

Refuses (exit 6) when the recipe's files or pinned image changed since the run, unless told
otherwise, and when the recipe now renders a different launch. Inputs are re-verified by the
preflight. The comparison is bit for bit where the recipe declares the "bitwise" tier (minus the
metrics it declares non-deterministic, such as perf/* timings), else within the recipe's bands.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from runner.console import safe
from runner.errors import EXIT_FAIL, EXIT_OK, EXIT_REFUSED, RecipeError
from runner.gate import metrics
from runner.launch.ports import launch_env
from runner.paths import bundle_root
from runner.plan.document import read_plan
from runner.plan.options import REPLAYED_ENV, RunOptions
from runner.plan.render import build_launch
from runner.plan.spec import Launch
from runner.recipe import Recipe, load_recipe
from runner.records.record import (
    RunStatus,
    changed_recipe_files,
    load_record,
    recipe_digest,
    recipe_file_hashes,
    status_of,
    write_json_atomic,
)
from runner.records.rundirs import new_run_id, run_dir_for
from runner.secrets import is_secret

DEFAULT_NONDETERMINISTIC = ("perf/*",)
RECIPE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# a value replay may re-apply (REPLAYED_ENV): numbers and settings, never a path or a command
REPLAYED_VALUE = re.compile(r"[A-Za-z0-9:._,=+-]{0,64}")
UINT = re.compile(r"0|[1-9][0-9]{0,18}")
# script variables that belong to one run or one host: chosen anew by the replay
PER_RUN = ("RECIPE_RAY_PORT_BASE", "RECIPE_RAY_TEMP_DIR", "RECIPE_RAY_ADDRESS")


def untrusted_fields(rec: dict, run_dir: Path) -> list[str]:
    """Refusal reasons, each naming the run.json field: what a run cannot legitimately have recorded.

    Checked before anything of the record is used. Only the variables of REPLAYED_ENV are ever taken
    from a record's environment (restore_environment); the rest is not read at all.
    """
    reasons = []
    name = rec.get("recipe")
    if not isinstance(name, str) or not RECIPE_NAME.fullmatch(name) or ".." in name:
        reasons.append(f"field 'recipe' {name!r} is not a recipe name (letters, digits, '_', '.', '-'; no '/' "
                       "or '..')")
    env = rec.get("environment", {})
    if not isinstance(env, dict):
        reasons.append("field 'environment' is not a mapping")
        env = {}
    for k in REPLAYED_ENV:
        v = env.get(k)
        if v is not None and (not isinstance(v, str) or not REPLAYED_VALUE.fullmatch(v)):
            reasons.append(f"field 'environment.{k}' {str(v)[:40]!r} is not a plain setting "
                           "(letters, digits and :._,=+- only)")
    recorded = rec.get("run_dir")
    if not isinstance(recorded, str) or "\0" in recorded or Path(recorded).resolve() != run_dir.resolve():
        reasons.append(f"field 'run_dir' {str(recorded)[:200]!r} is not the directory the record was read from "
                       f"({run_dir})")
    inputs = rec.get("inputs_dir")
    script_env = rec.get("script_env") if isinstance(rec.get("script_env"), dict) else {}
    if not isinstance(inputs, str) or "\0" in inputs or not Path(inputs).is_dir():
        reasons.append(f"field 'inputs_dir' {str(inputs)[:200]!r} is not a directory on this machine")
    else:
        for key in ("RECIPE_MODEL_DIR", "RECIPE_DATA_DIR"):
            p = script_env.get(key)
            if not isinstance(p, str) or "\0" in p or \
                    not on_host(p, script_env, inputs).resolve().is_relative_to(Path(inputs).resolve()):
                reasons.append(f"field 'script_env.{key}' {str(p)[:200]!r} is not a directory inside the run's "
                               f"inputs_dir {inputs}")
    return reasons


def on_host(path: str, script_env: dict, inputs_dir: str) -> Path:
    """A directory of the job's under its inputs root, moved to the run's inputs_dir on this host
    (a docker run's job saw its inputs mounted elsewhere); any other path as it is."""
    job_inputs = script_env.get("RECIPE_INPUTS_DIR")
    if isinstance(job_inputs, str) and job_inputs and Path(path).is_relative_to(job_inputs):
        return Path(inputs_dir) / Path(path).relative_to(job_inputs)
    return Path(path)


def recorded_options(rec: dict) -> dict[str, Any]:
    """The typed options the record holds (RunOptions.resolve's flag names), or a one-line usage error
    naming the field. Only these, and REPLAYED_ENV, are taken from a record."""
    env = rec["script_env"] if isinstance(rec.get("script_env"), dict) else {}

    def uint(field: str, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if not isinstance(value, str) or not UINT.fullmatch(value):
            raise RecipeError(f"run.json: field '{field}' {str(value)[:40]!r} is not a plain integer", 2)
        return int(value)

    def text(field: str, value: Any) -> str:
        if not isinstance(value, str) or not value or any(c in value for c in "\0\n\r"):
            raise RecipeError(f"run.json: field '{field}' {str(value)[:40]!r} is not a plain string", 2)
        return value

    deterministic = env.get("RECIPE_DETERMINISTIC")
    if deterministic not in ("0", "1"):
        raise RecipeError(f"run.json: field 'script_env.RECIPE_DETERMINISTIC' {str(deterministic)[:40]!r} "
                          "is not 0 or 1", 2)
    opts = {"cell": text("cell", rec.get("cell")), "nodes": uint("nodes", rec.get("nodes")),
            "gpus_per_node": uint("gpus_per_node", rec.get("gpus_per_node")),
            "inputs_dir": Path(text("inputs_dir", rec.get("inputs_dir"))),
            "model_dir": on_host(text("script_env.RECIPE_MODEL_DIR", env.get("RECIPE_MODEL_DIR")), env,
                                 rec["inputs_dir"]),
            "data_dir": on_host(text("script_env.RECIPE_DATA_DIR", env.get("RECIPE_DATA_DIR")), env,
                                rec["inputs_dir"]),
            "deterministic": deterministic == "1"}
    for key, var in (("seed", "RECIPE_SEED"), ("rollout_seed", "RECIPE_ROLLOUT_SEED"),
                     ("num_rollout", "RECIPE_NUM_ROLLOUT")):
        opts[key] = uint(f"script_env.{var}", env.get(var))
    return opts


def entrypoint_differences(rec: dict, launch: Launch) -> list[str]:
    """The recorded interpreter and run script must be what this checkout renders, inside the bundle."""
    entry = rec.get("entrypoint", [])
    bundle = rec.get("bundle_dir") if isinstance(rec.get("bundle_dir"), str) else ""
    if not isinstance(entry, list) or not all(isinstance(w, str) for w in entry) or \
            normalize(entry, "", "", "", bundle=bundle) != normalize(launch.plan.entrypoint, "", "", "",
                                                                     bundle=bundle and str(bundle_root())):
        return [f"field 'entrypoint' {entry!r} is not what this checkout renders ({launch.plan.entrypoint!r})"]
    root = bundle_root().resolve()
    for w in launch.plan.entrypoint[1:]:
        if w.startswith("/") and w.endswith(".sh") and not Path(w).resolve().is_relative_to(root):
            return [f"field 'entrypoint' runs {w}, outside the bundle {root}"]
    return []


@dataclass
class Comparison:
    mode: str  # bitwise | bands
    differences: list[str] = field(default_factory=list)
    compared: int = 0
    excluded: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {"mode": self.mode, "identical": self.identical, "compared_values": self.compared,
                "excluded_metrics": self.excluded, "differences": self.differences}


def normalize(words: list[str], run_dir: str, output_dir: str, run_id: str, inputs_dir: str = "",
              bundle: str = "") -> list[str]:
    """Replace a run's own locations and id, which legitimately differ between a run and its replay
    (and between a docker run's mounts and a replay's host paths): innermost first."""
    places = [(output_dir, "<OUTPUT_DIR>"), (run_dir, "<RUN_DIR>"), (inputs_dir, "<INPUTS_DIR>"),
              (bundle, "<BUNDLE>"), (run_id, "<RUN_ID>")]
    out = []
    for w in words:
        for place, name in places:
            if place:  # an unrecorded place ("") replaces nothing
                w = w.replace(place, name)
        out.append(w)
    return out


def check_unchanged(rec: dict, recipe: Recipe, allow_recipe: bool, allow_image: bool) -> list[str]:
    """Refusal reasons: the recipe's files or image differ from the record."""
    reasons = []
    files_now = recipe_file_hashes(recipe)
    before = rec.get("recipe_files", {})
    changed = changed_recipe_files(before, files_now)
    if recipe_digest(files_now) != rec.get("recipe_digest") and (changed or not before) and not allow_recipe:
        reasons.append(f"recipe {recipe.name} changed since the run (recorded {rec.get('recipe_digest')}, now "
                       f"{recipe_digest(files_now)}; files: {', '.join(changed) or 'unknown'}); "
                       "--allow-changed-recipe to replay anyway")
    now = RunOptions.resolve(recipe, from_env=True).image  # not a replay option: $RECIPE_IMAGE, else the pin
    if now != rec.get("image") and not allow_image:
        reasons.append(f"image changed since the run (recorded {rec.get('image')}, now {now}); "
                       "--allow-changed-image to replay anyway")
    return reasons


def package_differences(rec: dict, now: dict | None) -> list[str]:
    """'torch: recorded 2.13.0+cpu, now 2.14.1' for each recorded package whose version differs now."""
    before = (rec.get("packages") or {}).get("versions") or {}
    after = (now or {}).get("versions") or {}
    return [f"{k}: recorded {before.get(k)}, now {after.get(k)}" for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)]


def relaunch(rec: dict, recipe: Recipe, run_id: str, run_dir: Path, extra_env: dict[str, str],
             skip: set[str], resume_from: Path | None = None) -> Launch:
    """The launch of the record's typed options, rendered by this checkout. Skipped preflight checks
    come from the replay's own command line (`skip`), never from the record's `preflight_skipped`."""
    opts = dataclasses.replace(RunOptions.resolve(recipe, recorded_options(rec), from_env=True),
                               resume_from=resume_from)
    return build_launch(opts, run_id=run_id, run_dir=run_dir, backend="local", extra_env=extra_env, skip=skip)


def recorded_resume(rec: dict) -> Path | None:
    """The checkpoint directory a resumed run was launched with (run.json resume_of.checkpoint's
    parent), used only to render the run's launch again for the comparison with its plan.json."""
    ref = rec.get("resume_of")
    ckpt = ref.get("checkpoint") if isinstance(ref, dict) else None
    if ckpt is None:
        return None
    if not isinstance(ckpt, str) or not ckpt.startswith("/") or "\0" in ckpt:
        raise RecipeError(f"run.json: field 'resume_of.checkpoint' {str(ckpt)[:200]!r} is not an absolute path", 2)
    return Path(ckpt).parent


def guarded_relaunch(verb: str, run_dir: Path, rec: dict, target_parent: Path, skip: set[str], *,
                     allow_recipe: bool = False, allow_image: bool = False) -> tuple[Recipe, Launch]:
    """The record's launch rendered again by this checkout into a new run directory under
    `target_parent`, or a refusal (exit 6) naming what changed since the run: a record field a run
    cannot have written, the recipe's files, the image, or the rendered launch (its plan.json).
    For `recipe replay` and `recipe resume` alike."""
    reasons = untrusted_fields(rec, run_dir)
    if reasons:
        raise RecipeError(f"refusing to {verb} {run_dir.name}: {'; '.join(reasons)}", EXIT_REFUSED)
    recipe = load_recipe(rec["recipe"])
    reasons = check_unchanged(rec, recipe, allow_recipe, allow_image)
    if reasons:
        raise RecipeError(f"refusing to {verb} {run_dir.name}: {'; '.join(reasons)}", EXIT_REFUSED)
    applied = restore_environment(rec)
    if applied:
        click.echo(f"{verb}: re-applies from the record: {', '.join(applied)}", err=True)
    run_id = new_run_id(recipe.name, rec["cell"])
    target = run_dir_for(None, target_parent, run_id)
    resumed = recorded_resume(rec)
    launch = relaunch(rec, recipe, run_id, target, launch_env(run_id), skip, resumed)
    plan = recorded_plan(run_dir, rec)
    diffs = entrypoint_differences(plan, launch) + launch_differences(plan, launch)
    if diffs:
        raise RecipeError(f"refusing to {verb} {run_dir.name}: the recipe now renders a different launch: "
                          f"{'; '.join(diffs[:3])}", EXIT_REFUSED)
    if resumed is not None:
        # A resumed run's chain is one run: it is replayed from the start, and resumed from its own checkpoint.
        launch = relaunch(rec, recipe, run_id, target, launch_env(run_id), skip)
    return recipe, launch


def recorded_plan(run_dir: Path, rec: dict) -> dict:
    """The run's plan.json (the launch frozen before it ran, read as data by document.read_plan), else
    the same fields of run.json (runs recorded before plan.json existed)."""
    path = run_dir / "plan.json"
    if not path.exists() and not path.is_symlink():
        return rec
    doc = read_plan(run_dir, complete=False)   # PlanFile's keys and types, or a one-line usage error
    return {**doc, "job_env": doc["env"]}


def _where(rec: dict) -> tuple[str, ...]:
    """A recorded plan's own locations, as the job saw them (a docker run's: its mounts)."""
    env = rec.get("script_env") if isinstance(rec.get("script_env"), dict) else {}
    bundle = rec.get("bundle_dir") if isinstance(rec.get("bundle_dir"), str) else ""
    return rec["run_dir"], rec["output_dir"], rec["run_id"], str(env.get("RECIPE_INPUTS_DIR", "")), bundle


def launch_differences(rec: dict, launch: Launch) -> list[str]:
    """What this checkout renders now against the recorded plan (`rec`: recorded_plan's answer)."""
    old = _where(rec)
    # a place the record does not state (a run before plan.json held bundle_dir) is compared as it is on both sides
    new = (str(launch.run_dir), str(launch.output_dir), launch.run_id, str(launch.inputs_dir),
           old[4] and str(bundle_root()))
    diffs = []
    a, b = normalize(rec["argv"], *old), normalize(launch.plan.argv, *new)
    if a != b:
        i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        diffs.append(f"argv differs at position {i}: recorded {a[i:i + 2]} vs now {b[i:i + 2]}")
    ea = {k: normalize([v], *old)[0] for k, v in rec.get("job_env", {}).items()}
    eb = {k: normalize([v], *new)[0] for k, v in launch.plan.job_env.items()}
    for k in sorted(set(ea) | set(eb)):
        if ea.get(k) != eb.get(k) and not is_secret(k):
            diffs.append(f"job env {k}: recorded {ea.get(k)!r} vs now {eb.get(k)!r}")
    # what the script exports (a recipe that is only its run script reads its options from there)
    sa = {k: normalize([v], *old)[0] for k, v in (rec.get("script_env") or {}).items() if k not in PER_RUN}
    sb = {k: normalize([v], *new)[0] for k, v in launch.plan.script_env.items() if k not in PER_RUN}
    for k in sorted(set(sa) | set(sb)):
        if sa.get(k) != sb.get(k):
            diffs.append(f"script env {k}: recorded {sa.get(k)!r} vs now {sb.get(k)!r}")
    return diffs


def restore_environment(rec: dict) -> list[str]:
    """Re-apply the recorded values of REPLAYED_ENV (checked by untrusted_fields), and nothing else of
    the record's environment; returns the names applied."""
    env = rec.get("environment", {})
    applied = [k for k in REPLAYED_ENV if isinstance(env.get(k), str)]
    for k in applied:
        os.environ[k] = env[k]
    return applied


def compare(original: Path, replayed: Path, recipe: Recipe, tier: str) -> Comparison:
    a, b = metrics.collect(original), metrics.collect(replayed)
    if tier == "bitwise":
        patterns = recipe.determinism.nondeterministic_metrics
        excluded = sorted(m for m in set(a.values) | set(b.values) if any(fnmatch.fnmatch(m, p) for p in patterns))
        for m in excluded:
            a.values.pop(m, None)
            b.values.pop(m, None)
        from runner.gate.evaluate import compare_exact

        diffs = compare_exact(a, b)
        n = sum(len(v) for v in a.values.values())
        if n == 0:
            diffs.append("the original run has no metrics to compare")
        return Comparison("bitwise", diffs, n, excluded)
    from runner.gate.evaluate import compare_bands, load_expected

    result = compare_bands(b, a, load_expected(recipe.path("expected_metrics")))
    diffs = [f"{r.rule.name}: {r.observed}" for r in result.failed_rows()]
    if not result.rows:
        diffs.append("the recipe declares no band rules: a statistical replay has nothing to compare")
    return Comparison("bands", diffs, sum(len(v) for v in b.values.values()))


def print_comparison(c: Comparison, original: str, replay_dir: Path) -> None:
    verdict = "IDENTICAL" if c.identical else "DIFFERENT"
    what = "bit for bit" if c.mode == "bitwise" else "within the recipe's bands"
    click.echo(f"replay: {verdict} {what}: {c.compared} value(s) compared"
               + (f", excluded {', '.join(c.excluded)}" if c.excluded else ""), err=True)
    for d in c.differences[:30]:
        click.echo(f"  {safe(d)}", err=True)  # metric names come from the runs' events: data
    if len(c.differences) > 30:
        click.echo(f"  ... and {len(c.differences) - 30} more", err=True)
    click.echo(f"replay: original {original}\nreplay: replayed {replay_dir}", err=True)


def load_replayable(run_dir: Path, statuses: tuple[str, ...] = (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED),
                    only: str = "only finished runs can be replayed") -> dict:
    """run.json of a run `recipe replay` (or, with its own statuses, `recipe resume`) may take up."""
    rec = load_record(run_dir)
    if status_of(rec) not in statuses:
        raise RecipeError(f"{run_dir}: run status is '{safe(str(rec.get('status')))}'; {only}", EXIT_REFUSED)
    for key in ("recipe", "script_env", "argv", "cell", "run_dir", "run_id", "output_dir"):
        if key not in rec:
            raise RecipeError(f"{run_dir}/run.json: field '{key}' missing; not a run record of this runner", 2)
    return rec


def write_replay_json(replay_dir: Path, original: str, c: Comparison, rc: int,
                      across_versions: list[str] | None = None) -> None:
    extra = {"across_versions": across_versions} if across_versions else {}
    write_json_atomic(replay_dir / "replay.json", {"original": original, "run_exit_code": rc, **c.as_dict(),
                                                  **extra})


def outcome(rc: int, c: Comparison | None) -> int:
    if rc != EXIT_OK:
        return rc
    return EXIT_OK if c and c.identical else EXIT_FAIL


def load(run_dir: Path) -> tuple[dict, Recipe]:
    rec = load_replayable(run_dir)
    return rec, load_recipe(rec["recipe"])
