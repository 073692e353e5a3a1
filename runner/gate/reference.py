"""A recipe's blessed reference series: `reference_metrics.jsonl` beside expected_metrics.toml.

Same format as a run's metrics.jsonl (runner/gate/metrics.py), with the blessed run's provenance in
the header under "provenance" (run id, recipe digest and files, bundle commit, image, cell, seeds,
argv, environments, inputs, host, skipped preflight checks). Band and relative rules hold later runs
to it; `recipe diff RUN` compares a run with it. Only `recipe bless` writes it, and only for a run
recorded by `recipe run` that succeeded, of the recipe's files as they are now, with every preflight
check run (or `--allow-skipped-preflight`, which the provenance records), that passes its gate.
An existing reference is replaced only with `--replace`, and kept under reference_history/.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from runner.gate.metrics import Series, read_metrics_jsonl, write_metrics_jsonl

REFERENCE_FILE = "reference_metrics.jsonl"
# run.json fields that say which run a reference came from
PROVENANCE_KEYS = ("run_id", "recipe", "recipe_digest", "recipe_files", "cell", "layout", "image", "bundle",
                   "backend", "nodes", "gpus_per_node", "seeds", "deterministic", "determinism", "started_at",
                   "ended_at", "status", "exit_code", "output_dir", "argv", "forward_args", "job_env", "script_env",
                   "environment", "inputs_dir", "inputs_verification", "host", "preflight_skipped")


def reference_path(expected_path: str | Path) -> Path:
    return Path(expected_path).parent / REFERENCE_FILE


def load_reference(expected_path: str | Path) -> Series | None:
    p = reference_path(expected_path)
    return read_metrics_jsonl(p) if p.is_file() else None


def reference_provenance(expected_path: str | Path) -> dict[str, Any] | None:
    """The blessed run's provenance from the reference's header line alone (cheap: no values read)."""
    import json

    from runner.errors import RecipeError
    from runner.gate.files import LINE_MAX, METRICS_MAX, open_regular

    p = reference_path(expected_path)
    try:
        with open_regular(p, None, METRICS_MAX, "reference") as f:
            header = json.loads(f.readline(LINE_MAX).decode("utf-8") or "null")
    except (OSError, RecipeError, ValueError, RecursionError):   # absent, not a file, not JSON
        return None
    prov = header.get("provenance") if isinstance(header, dict) else None
    return prov if isinstance(prov, dict) else None


def provenance(run_dir: Path, run: dict[str, Any] | None, series: Series) -> dict[str, Any]:
    prov: dict[str, Any] = {k: run[k] for k in PROVENANCE_KEYS if run and k in run}
    prov.update({"run_dir": str(run_dir.resolve()), "series_source": series.source,
                 "blessed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    if run is None:
        prov["note"] = "no run.json: provenance unknown beyond this directory"
    return prov


HISTORY_DIR = "reference_history"


def keep_in_history(expected_path: str | Path) -> Path:
    """Copy the current reference to reference_history/<replaced at>-<its run id>/reference_metrics.jsonl.

    A copy, not a move: if writing the new reference then fails, the recipe still has the old one. Its
    header keeps the provenance of the run it came from; the directory name says when it was replaced.
    (The file keeps the name reference_metrics.jsonl so that, like the reference, it is not a launch file.)
    """
    from runner.atomicfile import write_text_atomic

    src = reference_path(expected_path)
    run_id = (reference_provenance(expected_path) or {}).get("run_id") or "unknown-run"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(run_id))
    dest = src.parent / HISTORY_DIR / f"{stamp}-{safe}" / REFERENCE_FILE
    n = 1
    while dest.exists():   # two replacements within a second
        n += 1
        dest = src.parent / HISTORY_DIR / f"{stamp}-{safe}-{n}" / REFERENCE_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest, src.read_text(encoding="utf-8"))
    return dest


def write_reference(series: Series, expected_path: str | Path, prov: dict[str, Any]) -> Path:
    ref = Series(values=series.values, source="reference", files=series.files, conflicts=series.conflicts,
                 unplaced=series.unplaced, extra={"provenance": prov})
    return write_metrics_jsonl(ref, reference_path(expected_path))
