"""Preflight check `packages`: can the job's own interpreter and PATH run what the run script runs?

A recipe that runs on the host (the tiny CPU recipe: torch, transformers, TRL, Ray) names the pip
extras it needs in recipe.toml (`host_extras`); pyproject.toml lists what each extra holds. This
check asks the interpreter that will run the job (the plan's entry point, resolved on the PATH the
run script gets) which of those distributions it has, and checks that every program the run script
calls (`ray`, `python3`, ...) is on that PATH. Without it, a base install dies inside the run script
("setsid: failed to execute ray") after the run directory was made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from runner.checks import Check, fail, ok
from runner.paths import bundle_root
from runner.plan.spec import Plan

NAME = "packages"
# Asks the job's interpreter for each distribution's version (None: not installed). stdlib only.
CHILD = r"""
import importlib.metadata as md, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(==\s*([^;,\s]+))?")


def extra_requirements(extras: list[str], pyproject: Path) -> dict[str, str | None]:
    """{distribution: exact pin or None} of the named extras in pyproject.toml."""
    deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("optional-dependencies", {})
    out: dict[str, str | None] = {}
    for extra in extras:
        for req in deps.get(extra, []):
            m = _REQ.match(req)
            if m:
                out[m.group(1)] = m.group(3)
    return out


def run_path() -> str:
    """The PATH the run script gets (runner/launch/script.py puts this interpreter's bin first)."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def programs(commands: list[list[str]]) -> list[str]:
    """The programs the run script calls, in order, without duplicates (through setsid/env)."""
    out: list[str] = []
    for cmd in commands:
        words = list(cmd)
        while words and words[0] in ("setsid", "env", "exec"):
            words = words[1:]
        if words and "/" not in words[0] and words[0] not in out:
            out.append(words[0])
    return out


def installed(interpreter: str, names: list[str]) -> dict[str, str | None]:
    p = subprocess.run([interpreter, "-c", CHILD, *names], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": run_path()}, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{interpreter} could not list its packages: "
                           f"{(p.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(p.stdout)


def same_release(found: str, pin: str) -> bool:
    return found == pin or found.split("+", 1)[0] == pin  # 2.13.0+cpu is torch==2.13.0


def job_interpreter(plan: Plan) -> tuple[str, str | None]:
    """(the plan's interpreter word, its path on the run script's PATH or None). A recipe that is only
    its run script (no Ray job) names none: its `python3` on that PATH."""
    word = plan.entrypoint[0] if plan.entrypoint and plan.via_ray else "python3"
    return word, (shutil.which(word, path=run_path()) if "/" not in word else word)


def recorded_versions(recipe, plan: Plan) -> dict | None:
    """run.json's `packages`: the versions of the recipe's `record_packages`, asked of the job's own
    interpreter (in the image, the image's python); None when the recipe names none."""
    names = sorted(recipe.record_packages)
    if not names:
        return None
    word, interpreter = job_interpreter(plan)
    if interpreter is None:
        return {"interpreter": word, "versions": {}, "error": f"{word!r} is not on the run script's PATH"}
    try:
        return {"interpreter": interpreter, "versions": installed(interpreter, names)}
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"interpreter": interpreter, "versions": {}, "error": str(e)}


def check_packages(recipe, plan: Plan) -> Check:
    path = run_path()
    missing_programs = [p for p in programs(plan.commands) if shutil.which(p, path=path) is None]
    extras = list(recipe.host_extras)
    interp_word, interpreter = job_interpreter(plan)
    problems, data = [], {"interpreter": interpreter or interp_word, "extras": extras, "programs_missing":
                          missing_programs}
    if missing_programs:
        problems.append(f"not on PATH: {', '.join(missing_programs)}")
    if extras:
        wanted = extra_requirements(extras, bundle_root() / "pyproject.toml")
        if interpreter is None:
            problems.append(f"the job's interpreter {interp_word!r} is not on PATH")
        else:
            found = installed(interpreter, sorted(wanted))
            data["found"] = found
            absent = [n for n in sorted(wanted) if found.get(n) is None]
            wrong = [f"{n} {found[n]} (recipe pins =={wanted[n]})" for n in sorted(wanted)
                     if found.get(n) and wanted[n] and not same_release(found[n], wanted[n])]
            if absent:
                problems.append(f"{interpreter} lacks {', '.join(absent)}")
            if wrong:
                problems.append(f"{interpreter} has {', '.join(wrong)}")
    data["problems"] = problems
    if not problems:
        what = f"{interpreter} has the {'/'.join(extras)} extra" if extras else "no host packages declared"
        check = ok(NAME, f"{what}; on PATH: {', '.join(programs(plan.commands))}")
    else:
        spec = f"{bundle_root()}[{','.join(extras)}]" if extras else None
        fix = (f"`just run {recipe.name}` bootstraps the {','.join(extras)} extra into .venv; or "
               f"{interpreter or 'python3'} -m pip install '{spec}'" if spec else
               "run inside the pinned image (recipe run --backend docker), where the stack is installed")
        check = fail(NAME, "; ".join(problems), fix)
    check.data = data
    return check
