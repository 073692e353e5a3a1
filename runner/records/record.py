"""Run directories and their `run.json` provenance record.

A run directory is never reused. run.json is rewritten atomically (temp file, fsync, rename) at
each stage: "running" at launch, then "succeeded", "failed", "gate-failed" or "interrupted" at
the end. A run killed so hard that it could not say so stays "running"; `load_record` then
reports it as "interrupted (stale)" once its process is gone, so it is never mistaken for a
finished one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets as pysecrets
import socket
from pathlib import Path
from typing import Any

from runner.errors import RecipeError, UsageError
from runner.recipe import Recipe
from runner.secrets import redact_env

RECORD = "run.json"
SCHEMA = 1
FINAL_STATES = ("succeeded", "failed", "gate-failed", "interrupted", "preflight-failed")
# Environment prefixes worth recording (values of secrets are replaced by their names).
ENV_PREFIXES = ("RECIPE_", "NCCL_", "CUDA_", "NVTE_", "CUBLAS_", "PYTHONHASHSEED", "TORCH_", "RAY_", "SLURM_",
                "MASTER_", "WANDB_", "HF_", "OMP_", "MKL_")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_run_id(recipe: str, cell: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{recipe}-{cell}-{pysecrets.token_hex(3)}"


def runs_root(override: str | os.PathLike | None) -> Path:
    return Path(override or os.environ.get("RECIPE_RUNS_DIR") or Path.cwd() / "runs").resolve()


def create_run_dir(runs_dir: Path, run_id: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    d = runs_dir / run_id
    d.mkdir()  # FileExistsError if reused: never silently share a directory
    return d


def claim_run_dir(path: Path) -> Path:
    """Use an explicit --run-dir: created if absent; refused if it already holds a run."""
    path = path.resolve()
    if (path / RECORD).exists():
        raise UsageError(f"--run-dir {path}: already holds a run ({RECORD}); run directories are never reused")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def recipe_file_hashes(recipe: Recipe) -> dict[str, str]:
    """{path relative to recipes/: sha256} of every file that defines the recipe (its tag manifest's list)."""
    from runner.inputs.tagmanifest import build

    return {e.path: e.sha256 for e in build(recipe)[0].entries}


def recipe_digest(hashes: dict[str, str]) -> str:
    """sha256 over the sha256sum-style lines of the recipe's files: changes when any byte changes."""
    text = "".join(f"{h}  {p}\n" for p, h in sorted(hashes.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def recorded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ if environ is None else environ)
    keep = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)}
    return dict(sorted(redact_env(keep).items()))


class RunRecord:
    """The mutable record of one run, saved atomically on every change of stage."""

    def __init__(self, run_dir: Path, data: dict[str, Any]):
        self.dir = run_dir
        self.data = data

    @classmethod
    def start(cls, directory: Path, **fields: Any) -> RunRecord:
        data = {"schema": SCHEMA, "status": "running", "started_at": now(), "ended_at": None,
                "exit_code": None, "pid": os.getpid(), "hostname": socket.gethostname(), **fields}
        rec = cls(directory, data)
        rec.save()
        return rec

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, status: str, exit_code: int, **fields: Any) -> None:
        assert status in FINAL_STATES, status
        self.update(status=status, exit_code=exit_code, ended_at=now(), **fields)

    def save(self) -> None:
        write_json_atomic(self.dir / RECORD, self.data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_record(run_dir: Path) -> dict[str, Any]:
    """run.json with `status` made honest: a "running" record whose process is gone is interrupted."""
    f = Path(run_dir) / RECORD
    try:
        data = json.loads(f.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{f}: no run record here (is {run_dir} a run directory?)", 2) from None
    except json.JSONDecodeError as e:
        raise RecipeError(f"{f}: not valid JSON ({e})", 2) from None
    if data.get("status") == "running" and data.get("hostname") == socket.gethostname():
        pid = data.get("pid")
        if isinstance(pid, int) and not _alive(pid):
            data["status"] = "interrupted (stale)"
    return data
