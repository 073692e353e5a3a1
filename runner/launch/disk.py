"""Preflight check `disk`: the space a run will write, from the recipe's stated parts ([hardware.disk]).

The parts, each on the file system it is written to:
- checkpoints: the model's parameter count (the recipe's config.json, through its family's shape)
  x the bytes per parameter of each saved state x the checkpoints one run keeps, under the output dir;
- Ray's object spill and session logs, under Ray's temp dir (RECIPE_RAY_TEMP_DIR, else /tmp: as
  recipes/lib/launch.sh places it);
- the run's own records and logs, under the runs directory.
Parts on one file system are added up. The check fails, naming the parts, when the run does not fit;
it warns when the run fits but a resume of it would not: a resumed run writes another checkpoint
beside the ones the interrupted run kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.checks import Check, CheckStatus, fail, ok
from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.recipe import Recipe

NAME = "disk"
RUNS_DIR_MIN_FREE_MIB = 64   # a run's records and logs, for a recipe that states no [hardware.disk]
GIB = 2**30


@dataclass(frozen=True)
class Part:
    name: str
    gib: float
    where: Path   # the directory it is written under


def existing(p: Path) -> Path:
    """The nearest directory that exists at or above p (where a directory yet to be made will live)."""
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def checkpoint_gib(recipe: Recipe) -> tuple[float, int]:
    """(GiB of one checkpoint, parameters): parameters from config.json x the bytes per parameter."""
    from runner.model.family import family_name, load_family, load_hf_config, recipe_hf_config_path

    disk = recipe.hardware.disk
    assert disk is not None
    cfg_path = recipe_hf_config_path(recipe)
    hf = load_hf_config(cfg_path)
    family = load_family(family_name(recipe.model_family, hf))
    if family is None or not callable(getattr(family, "shape", None)):
        raise UsageError(f"recipe {recipe.name}: [hardware.disk] needs the parameter count of {cfg_path.name}, "
                         "and no model family module gives its shape")
    params = family.shape(hf).total_params()
    return params * sum(disk.checkpoint_bytes_per_param.values()) / GIB, params


def parts(recipe: Recipe, output_dir: Path, runs_dir: Path, ray_dir: Path, resume: bool = False) -> list[Part]:
    """What the run writes, part by part; with resume, one more checkpoint beside the kept ones."""
    disk = recipe.hardware.disk
    assert disk is not None
    ckpt, params = checkpoint_gib(recipe)
    states = " + ".join(f"{k} {v} B" for k, v in disk.checkpoint_bytes_per_param.items())
    n = disk.checkpoints_kept + (1 if resume else 0)
    out = [Part(f"{n} checkpoint(s) of {ckpt:.1f} GiB ({params:,} params x ({states}))", n * ckpt, output_dir),
           Part("Ray object spill", disk.ray_spill_gib, ray_dir),
           Part("logs", disk.logs_gib, runs_dir)]
    return [p for p in out if p.gib > 0]


def shortfalls(want: list[Part]) -> list[str]:
    """One line per file system that cannot take the parts written to it."""
    by_fs: dict[int, list[tuple[Part, Path]]] = {}
    for p in want:
        where = existing(p.where)
        by_fs.setdefault(os.stat(where).st_dev, []).append((p, where))
    out = []
    for group in by_fs.values():
        need = sum(p.gib for p, _ in group)
        where = group[0][1]
        free = shutil.disk_usage(where).free / GIB
        if free < need:
            named = ", ".join(f"{p.name} {p.gib:.1f} GiB under {p.where}" for p, _ in group)
            out.append(f"{free:.1f} GiB free at {where}, need {need:.1f} GiB: {named}")
    return out


def writable(runs_dir: Path) -> Check | None:
    """A runs directory that cannot take the run's record: the run must not start."""
    where = existing(Path(runs_dir))
    if not os.access(where, os.W_OK | os.X_OK):
        why = "on a read-only file system" if os.statvfs(where).f_flag & os.ST_RDONLY else "not writable"
        return fail(NAME, f"runs directory {runs_dir}: {where} is {why}",
                    "give --runs-dir (or $RECIPE_RUNS_DIR) on a writable file system")
    free_mib = shutil.disk_usage(where).free / 2**20
    if free_mib < RUNS_DIR_MIN_FREE_MIB:
        return fail(NAME, f"runs directory {runs_dir}: {free_mib:.0f} MiB free at {where}, need "
                    f"{RUNS_DIR_MIN_FREE_MIB} MiB for the run's records and logs",
                    "free space there, or give --runs-dir on another file system")
    return None


def check_disk(recipe: Recipe, output_dir: Path, runs_dir: Path, environ: dict[str, str] | None = None) -> Check:
    env = os.environ if environ is None else environ
    if (bad := writable(runs_dir)) is not None:
        return bad
    if recipe.hardware.disk is None:
        return ok(NAME, f"runs directory {runs_dir} writable; the recipe writes no checkpoints")
    ray_dir = Path(env.get("RECIPE_RAY_TEMP_DIR") or "/tmp")
    run = parts(recipe, output_dir, runs_dir, ray_dir)
    if short := shortfalls(run):
        return fail(NAME, "; ".join(short), "point --output-dir (or --runs-dir, RECIPE_RAY_TEMP_DIR) at a larger "
                    "file system")
    total = sum(p.gib for p in run)
    if short := shortfalls(parts(recipe, output_dir, runs_dir, ray_dir, resume=True)):
        return Check(NAME, CheckStatus.WARN, f"this run fits ({total:.1f} GiB), a resume of it would not (another "
                     f"checkpoint beside the kept ones): " + "; ".join(short), "free space before resuming")
    return ok(NAME, f"{total:.1f} GiB needed (" + ", ".join(f"{p.name} {p.gib:.1f} GiB" for p in run)
              + "), and room for a resume's checkpoint")
