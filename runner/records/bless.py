"""Which runs may become a recipe's reference: `recipe gate --bless` asks before writing one.

A reference is what later runs are compared with, so it must come from a recorded run that
succeeded, of the recipe's files as they are now, with every preflight check run (or
`--allow-skipped-preflight`, which the reference's provenance records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.checks import CheckStatus
from runner.console import safe
from runner.errors import EXIT_REFUSED, RecipeError, UsageError
from runner.records.record import RunStatus, changed_recipe_files, recipe_file_hashes


def check_blessable(run: dict[str, Any] | None, run_dir: Path, recipe, allow_skipped_preflight: bool) -> None:
    """Only a recorded run that succeeded, of the recipe as it is now, fully preflighted (or allowed).

    Each refusal quotes the record, so its line goes through console.safe: a received run.json is data."""
    f = run_dir / "run.json"
    if run is None:
        raise RecipeError(safe(f"{run_dir}: no run.json; only a run recorded by `recipe run` can be blessed"),
                          EXIT_REFUSED)
    status = run.get("status")
    if status is None:
        raise UsageError(safe(f"{f}: field 'status' missing; not a finished run record of this runner"))
    if status != RunStatus.SUCCEEDED:
        raise RecipeError(safe(f"{f}: status is {status!r}; only a run that succeeded "
                               "(and passes its gate) can be blessed"), EXIT_REFUSED)
    recorded = run.get("recipe_files")
    if not recorded:
        raise RecipeError(safe(f"{f}: field 'recipe_files' missing; cannot tell which recipe files the run used"),
                          EXIT_REFUSED)
    changed = changed_recipe_files(recorded, recipe_file_hashes(recipe))
    if changed:
        raise RecipeError(safe(f"{f}: recipe {recipe.name} changed since the run ({', '.join(changed[:5])}); "
                               "a reference must come from the recipe as it is now"), EXIT_REFUSED)
    checks = run.get("preflight") or []
    skipped = list(dict.fromkeys([*(run.get("preflight_skipped") or []),
                                  *(str(c.get("name", "?")) for c in checks
                                    if c.get("status") == CheckStatus.SKIPPED)]))
    if not checks:
        skipped.append("all (no preflight recorded)")
    if skipped and not allow_skipped_preflight:
        raise RecipeError(safe(f"{f}: preflight check(s) skipped: {', '.join(skipped)}; "
                               "--allow-skipped-preflight to bless it anyway (the reference records it)"),
                          EXIT_REFUSED)
