"""A recipe's blessed reference series: `reference_metrics.jsonl` beside expected_metrics.toml.

Same format as a run's metrics.jsonl (runner/gate/metrics.py), with the blessed run's provenance in
the header under "provenance" (run id, recipe digest, bundle commit, image, cell, seeds). Band
rules hold later runs to it. Only `recipe bless` writes it, and only for a run that passes its gate.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from runner.errors import EXIT_REFUSED, RecipeError, UsageError
from runner.gate.metrics import Series, read_metrics_jsonl, write_metrics_jsonl

REFERENCE_FILE = "reference_metrics.jsonl"
# run.json fields that say which run a reference came from
PROVENANCE_KEYS = ("run_id", "recipe", "recipe_digest", "cell", "layout", "image", "bundle", "backend",
                   "nodes", "gpus_per_node", "seeds", "deterministic", "determinism", "started_at",
                   "ended_at", "status")


def reference_path(expected_path: str | Path) -> Path:
    return Path(expected_path).parent / REFERENCE_FILE


def load_reference(expected_path: str | Path) -> Series | None:
    p = reference_path(expected_path)
    return read_metrics_jsonl(p) if p.is_file() else None


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    f = run_dir / "run.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{f}: not a readable run record ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{f}: expected a JSON object")
    return data


def provenance(run_dir: Path, run: dict[str, Any] | None, series: Series) -> dict[str, Any]:
    prov: dict[str, Any] = {k: run[k] for k in PROVENANCE_KEYS if run and k in run}
    prov.update({"run_dir": str(run_dir.resolve()), "series_source": series.source,
                 "blessed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    if run is None:
        prov["note"] = "no run.json: provenance unknown beyond this directory"
    return prov


def write_reference(series: Series, expected_path: str | Path, prov: dict[str, Any]) -> Path:
    ref = Series(values=series.values, source="reference", files=series.files, conflicts=series.conflicts,
                 unplaced=series.unplaced, extra={"provenance": prov})
    return write_metrics_jsonl(ref, reference_path(expected_path))


def check_blessable(run: dict[str, Any] | None, run_dir: Path) -> None:
    """A run is blessed only if it finished cleanly (its gate is checked separately)."""
    if run is None:
        return
    status = run.get("status")
    if status is not None and status != "succeeded":
        raise RecipeError(f"{run_dir / 'run.json'}: status is {status!r}; only a run that succeeded "
                          "(and passes its gate) can be blessed", EXIT_REFUSED)
