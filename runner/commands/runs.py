"""`recipe runs`: the recorded runs under the runs directory, newest last.

One row per directory holding a run.json (a docker or Slurm run's too: one record, as a local
run's). A record that cannot be read is listed with why, never skipped in silence, and does not
hide the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner.commands.output import json_option
from runner.gate.report import duration
from runner.plan.options import PathOpt


def gate_verdict(rec: dict[str, Any]) -> str:
    """What run.json says of the gate: passed, failed (N of M rules), absent, error, or '-' (not run).

    N counts what the gate counted as not passed (fail, blocked), M every rule it judged; an
    unreferenced rule does not decide the gate and is not among the N. Only the gate's own verdict
    words are counted (an allowlist): a record's other keys say nothing the gate did."""
    from runner.gate.evaluate import BLOCKED, FAIL, PASS, UNREFERENCED

    g = rec.get("gate")
    if not isinstance(g, dict):
        return "-"
    status = str(g.get("status", "?"))
    counts = g.get("counts")
    if status == "failed" and isinstance(counts, dict):
        n = {k: v for k, v in counts.items()
             if k in (PASS, FAIL, BLOCKED, UNREFERENCED) and isinstance(v, int) and not isinstance(v, bool) and v >= 0}
        return f"failed ({n.get(FAIL, 0) + n.get(BLOCKED, 0)} of {sum(n.values())} rules)"
    return status


def blessed_run_ids() -> dict[str, str | None]:
    """recipe -> the run id its reference was blessed from (None: no reference)."""
    from runner.gate.reference import reference_provenance
    from runner.recipe import list_recipes, load_recipe

    out: dict[str, str | None] = {}
    for name in list_recipes():
        try:
            prov = reference_provenance(load_recipe(name).path("expected_metrics"))
        except Exception:  # noqa: BLE001 - a broken recipe must not hide the runs of the others
            prov = None
        out[name] = (prov or {}).get("run_id")
    return out


def short_id(run_id: str) -> str:
    """The run id's own part (`<time>-<recipe>-<cell>-<id>` -> `<id>`): what tells 15 runs apart."""
    return run_id.rsplit("-", 1)[-1]


# the launch options a record states (script_env), as `recipe runs` names them, and the recipe.toml value
_OPTIONS = (("seed", "RECIPE_SEED", lambda r: r.run_defaults.seed),
            ("rseed", "RECIPE_ROLLOUT_SEED", lambda r: r.run_defaults.rollout_seed),
            ("steps", "RECIPE_NUM_ROLLOUT", lambda r: r.run_defaults.num_rollout),
            ("nodes", "RECIPE_NODES", lambda r: r.hardware.nodes),
            ("gpus", "RECIPE_GPUS_PER_NODE", lambda r: r.hardware.gpus_per_node))


def options_differing(rec: dict[str, Any], recipes: dict[str, Any]) -> str:
    """The options of this run that differ from its recipe's recipe.toml ("cell=ep4 seed=7 steps=3 det"):
    cell (not the default cell), seed, rseed (--rollout-seed), steps (--num-rollout), nodes, gpus (per
    node), det / no-det."""
    env = rec.get("script_env")
    recipe = recipes.get(rec.get("recipe"))  # type: ignore[arg-type]
    if recipe is None:
        return f"cell={rec['cell']}" if isinstance(rec.get("cell"), str) else ""
    cell = [f"cell={rec['cell']}"] if isinstance(rec.get("cell"), str) and rec["cell"] != recipe.default_cell else []
    if not isinstance(env, dict):
        return " ".join(cell)
    out = cell + [f"{name}={env[var]}" for name, var, default in _OPTIONS
           if isinstance(env.get(var), str) and env[var] != str(default(recipe))]
    det = env.get("RECIPE_DETERMINISTIC")
    if det in ("0", "1") and (det == "1") != recipe.run_defaults.deterministic:
        out.append("det" if det == "1" else "no-det")
    return " ".join(out)


def loaded_recipes() -> dict[str, Any]:
    from runner.recipe import list_recipes, load_recipe

    out = {}
    for name in list_recipes():
        try:
            out[name] = load_recipe(name)
        except Exception:  # noqa: BLE001 - a broken recipe must not hide the runs of the others
            continue
    return out


def run_row(d: Path, blessed: dict[str, str | None], recipes: dict[str, Any] | None = None) -> dict[str, Any] | None:
    from runner.errors import RecipeError
    from runner.records.record import RunStatus, is_stale, read_record

    try:
        rec = read_record(d)
    except RecipeError as e:
        return {"run": d.name, "run_dir": str(d), "started_at": None, "recipe": None, "cell": None,
                "status": "unreadable", "gate": "-", "blessed": False, "error": e.message}
    if rec is None:
        return None
    status = RunStatus.STALE if is_stale(rec) else rec.get("status", "?")
    recipe, run_id = rec.get("recipe"), rec.get("run_id") or d.name
    replay_of: dict[str, Any] = rec["replay_of"] if isinstance(rec.get("replay_of"), dict) else {}
    resume_of: dict[str, Any] = rec["resume_of"] if isinstance(rec.get("resume_of"), dict) else {}
    return {"run": d.name, "run_dir": str(d), "run_id": run_id, "started_at": rec.get("started_at"),
            "ended_at": rec.get("ended_at"), "recipe": recipe, "cell": rec.get("cell"), "backend": rec.get("backend"),
            "status": status, "exit_code": rec.get("exit_code"), "gate": gate_verdict(rec),
            "blessed": bool(recipe and blessed.get(recipe) and blessed[recipe] == run_id),
            "took": duration(rec.get("started_at"), rec.get("ended_at")),
            "options": options_differing(rec, recipes or {}),
            "replay_of": str(replay_of.get("run_id") or "") or None,
            "resume_of": str(resume_of.get("run_id") or "") or None}


def list_runs(root: Path) -> list[dict[str, Any]]:
    blessed, recipes = blessed_run_ids(), loaded_recipes()
    rows = [r for d in sorted(root.iterdir()) if d.is_dir() and (r := run_row(d, blessed, recipes)) is not None]
    return sorted(rows, key=lambda r: (r["started_at"] or "", r["run"]))


def format_rows(rows: list[dict[str, Any]], columns: int | None = None) -> str:
    """The table, fitted to the width (80 columns included): a short id first (the run's directory ends
    with it), start, recipe, status, gate, duration, the options that differ from the recipe (a cell
    other than its default among them) and what run it replays or resumes (of); * marks the recipe's blessed
    reference. Every cell is made safe to print (console.table), since each comes from a record
    someone else may have written."""
    from runner import console

    head = ("id", "started", "recipe", "status", "gate", "took", "options", "of")
    cells = [(short_id(str(r.get("run_id") or r["run"])) + ("*" if r["blessed"] else ""),
              str(r["started_at"] or "-").replace("+00:00", "")[5:16].replace("T", " ") or "-",
              r["recipe"] or "-",
              str(r["status"]) + (f": {r['error']}" if r.get("error") else ""), r["gate"], r.get("took") or "-",
              r.get("options") or "", short_id(r["replay_of"]) if r.get("replay_of")
              else f"resume {short_id(r['resume_of'])}" if r.get("resume_of") else "") for r in rows]
    # a column no run fills (no option changed, no replay) gives its room to the others
    keep = [i for i, h in enumerate(head) if h not in ("options", "of") or any(c[i] for c in cells)]
    return console.table([head[i] for i in keep], [[c[i] for i in keep] for c in cells], columns,
                         no_wrap=("id", "started", "recipe", "took", "of"), min_width={"status": 9, "gate": 6})


@click.command("runs")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--recipe", "recipe", metavar="NAME", help="Only the runs of this recipe.")
@json_option("Print the runs as a JSON list (one object per run, with its run_dir).")
def runs_cmd(runs_dir: Path | None, recipe: str | None, as_json: bool) -> None:
    """List the recorded runs: id, start (UTC), recipe, status, gate, duration, options, replay of.

    \b
    id is the end of the run's directory name (RUNS_DIR/<time>-<recipe>-<cell>-<id>), * its recipe's
    blessed reference; status is run.json's, except that a "running" record of this host whose
    process is gone shows as "interrupted (stale)"; gate is what the run recorded (`recipe check`
    does not change it); options are those that differ from the recipe's recipe.toml (a cell other
    than its default among them); of names
    the run a replay re-executed. --json gives every field and the run directories. A directory
    that does not exist lists no runs.
    """
    from runner import console
    from runner.records.rundirs import runs_root

    root = runs_root(runs_dir)
    rows = list_runs(root) if root.is_dir() else []
    if recipe:
        rows = [r for r in rows if r["recipe"] == recipe]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs in {console.safe(root)}", err=True)
    else:
        click.echo(format_rows(rows))
