"""`recipe runs`: the recorded runs under the runs directory, newest last.

One row per directory holding a run.json (or only the launcher.json of a docker/slurm wrapper
whose inner run has not written its record yet). A record that cannot be read is listed with why,
never skipped in silence, and does not hide the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner.commands.output import json_option
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


def run_row(d: Path, blessed: dict[str, str | None]) -> dict[str, Any] | None:
    from runner.errors import RecipeError
    from runner.gate.files import read_regular
    from runner.records.record import is_stale, read_record

    try:
        rec = read_record(d)
    except RecipeError as e:
        return {"run": d.name, "run_dir": str(d), "started_at": None, "recipe": None, "cell": None,
                "status": "unreadable", "gate": "-", "blessed": False, "error": e.message}
    if rec is None:
        try:
            lj = json.loads(read_regular(d / "launcher.json", root=d, what="launcher record"))
        except FileNotFoundError:
            return None
        except (RecipeError, OSError, ValueError, RecursionError):
            lj = {}
        lj = lj if isinstance(lj, dict) else {}
        return {"run": d.name, "run_dir": str(d), "started_at": lj.get("started_at"), "recipe": None, "cell": None,
                "status": f"{lj.get('backend', '?')} launcher, no run.json yet", "gate": "-", "blessed": False}
    status = "interrupted (stale)" if is_stale(rec) else rec.get("status", "?")
    recipe, run_id = rec.get("recipe"), rec.get("run_id") or d.name
    return {"run": d.name, "run_dir": str(d), "run_id": run_id, "started_at": rec.get("started_at"),
            "ended_at": rec.get("ended_at"), "recipe": recipe, "cell": rec.get("cell"), "backend": rec.get("backend"),
            "status": status, "exit_code": rec.get("exit_code"), "gate": gate_verdict(rec),
            "blessed": bool(recipe and blessed.get(recipe) and blessed[recipe] == run_id)}


def list_runs(root: Path) -> list[dict[str, Any]]:
    blessed = blessed_run_ids()
    rows = [r for d in sorted(root.iterdir()) if d.is_dir() and (r := run_row(d, blessed)) is not None]
    return sorted(rows, key=lambda r: (r["started_at"] or "", r["run"]))


def format_rows(rows: list[dict[str, Any]], columns: int | None = None) -> str:
    """The table, fitted to the width (console.table: every cell made safe to print, since each comes
    from a record someone else may have written)."""
    from runner import console

    head = ("started (UTC)", "recipe", "cell", "status", "gate", "blessed", "run")
    cells = [(str(r["started_at"] or "-").replace("+00:00", "Z"), r["recipe"] or "-", r["cell"] or "-",
              str(r["status"]) + (f": {r['error']}" if r.get("error") else ""), r["gate"],
              "yes" if r["blessed"] else "", r["run"]) for r in rows]
    return console.table(head, cells, columns)


@click.command("runs")
@click.option("--runs-dir", type=PathOpt, help="Parent of run directories (default: $RECIPE_RUNS_DIR or ./runs).")
@click.option("--recipe", "recipe", metavar="NAME", help="Only the runs of this recipe.")
@json_option("Print the runs as a JSON list (one object per run, with its run_dir).")
def runs_cmd(runs_dir: Path | None, recipe: str | None, as_json: bool) -> None:
    """List the recorded runs: start time, recipe, cell, status, gate verdict, blessed, directory.

    \b
    status is run.json's, except that a "running" record of this host whose process is gone shows
    as "interrupted (stale)"; gate is what the run recorded (`recipe check` does not change it);
    blessed: the run is its recipe's reference. A directory that does not exist lists no runs.
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
