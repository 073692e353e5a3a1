"""A preflight check's result, and running a set of checks: the type every check returns.

It sits below everything that defines checks (the host checks in runner/launch/preflight.py, each
backend's, each framework adapter's), so none of them reaches up into another to build one.
A check returns a Check with a CheckStatus; `--skip-preflight NAME` makes it SKIPPED (recorded in run.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from runner.errors import EXIT_USAGE, RecipeError


class CheckStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    NA = "n/a"
    SKIPPED = "skipped"


@dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str
    fix: str = ""
    data: dict | None = None  # machine-readable details for the run record (e.g. the verification)

    def as_dict(self) -> dict:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, CheckStatus.OK, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, CheckStatus.FAIL, detail, fix)


def na(name: str, detail: str) -> Check:
    return Check(name, CheckStatus.NA, detail)


def run_checks(checks: dict[str, Callable[[], Check]], skip: set[str]) -> list[Check]:
    out = []
    for name, fn in checks.items():
        if name in skip:
            out.append(Check(name, CheckStatus.SKIPPED, "skipped by --skip-preflight"))
            continue
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - a check that cannot run is a failed check, not a crash
            if isinstance(e, RecipeError) and e.code == EXIT_USAGE:  # a malformed file: exit 2 naming it
                raise
            msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            out.append(fail(name, f"check could not run: {msg}", f"--skip-preflight {name} to proceed anyway"))
    return out


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == CheckStatus.FAIL]
