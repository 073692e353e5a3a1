"""The one bash script that runs a Plan.

`recipe run` writes it into the run directory as run.sh, beside plan.json, before anything runs; the
recipe directory's own run.sh is the same rendering of the default cell with its locations left as
the variables a user sets by hand (`frozen`; `recipe lock NAME --recipe-files` writes it, and its
`--check` and tests/test_run_script.py hold it to what the runner renders). Every value is quoted
here (shlex.quote); the generic Ray lifecycle (start, readiness, submit, follow, stop) is
recipes/lib/launch.sh, which the script sources.
"""

from __future__ import annotations

import re
import shlex

from runner.plan.spec import Plan

# A placeholder in a frozen rendering: a word part the script expands at run time instead of a value.
_PH = re.compile("\ue000([A-Z_]+)\ue001")
# What each placeholder expands to (frozen scripts only); HEADER defines the variables they read.
EXPANSIONS = {
    "RECIPE_RUN_ID": "${RECIPE_RUN_ID}",
    "RECIPE_RUN_DIR": "${RECIPE_RUN_DIR}",
    "RECIPE_OUTPUT_DIR": "${RECIPE_OUTPUT_DIR}",
    "RECIPE_INPUTS_DIR": "${RECIPE_INPUTS_DIR}",
    "RECIPE_DIR": "${here}",
    "NCCL_NVLS_ENABLE": "${NCCL_NVLS_ENABLE:-$(recipe_nvls_default)}",
}
HEADER = """\
# Run by hand inside the image: set RECIPE_INPUTS_DIR (the inputs root, `recipe fetch NAME --inputs DIR`);
# RECIPE_RUN_DIR (default ./runs/<run id>) and RECIPE_OUTPUT_DIR (default RUN_DIR/output) are optional.
: "${RECIPE_INPUTS_DIR:?set RECIPE_INPUTS_DIR to the inputs root (recipe fetch NAME --inputs DIR)}"
: "${RECIPE_RUN_ID:=manual-$(date -u +%Y%m%dT%H%M%SZ)}"
: "${RECIPE_RUN_DIR:=$PWD/runs/$RECIPE_RUN_ID}"
: "${RECIPE_OUTPUT_DIR:=$RECIPE_RUN_DIR/output}"
"""


def placeholder(name: str) -> str:
    """A word part that a frozen rendering expands as EXPANSIONS[name]."""
    assert name in EXPANSIONS, name
    return f"\ue000{name}\ue001"


def word(w: str) -> str:
    """One shell word: literal parts single-quoted where needed, placeholders as their expansion."""
    parts = _PH.split(w)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f'"{EXPANSIONS[part]}"')
        elif part or len(parts) == 1:
            out.append(shlex.quote(part))
    return "".join(out)


def _array(name: str, words: list[str]) -> list[str]:
    lines = [f"{name}=("]
    line: list[str] = []
    for w in words:  # one flag with its values a line, as `recipe plan` shows them
        if w.startswith("--") and line:
            lines.append("  " + " ".join(line))
            line = []
        line.append(word(w))
    if line:
        lines.append("  " + " ".join(line))
    return [*lines, ")"]


def render_script(plan: Plan, *, lib: str, frozen: bool = False) -> str:
    """The script: exports, the argument blocks, then the Ray launch (or the entry point as it is).

    lib: how the script finds recipes/lib/launch.sh (an absolute path, or for a frozen rendering a
    path relative to the script's own directory)."""
    src = ['here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)', f'source "$here/{lib}"'] if frozen \
        else [f"source {word(lib)}"]
    what = (["# The frozen rendering of the default cell: `recipe lock NAME --recipe-files` rewrites it, and",
             "# its --check and tests/test_run_script.py hold it to what the runner renders."] if frozen
            else ["# Rendered for one run, beside its plan.json (the same launch as data)."])
    out = ["#!/usr/bin/env bash",
           f"# {plan.recipe}, cell {plan.cell}: the launch as the runner renders it (runner/frameworks/),",
           f"# as one script; `recipe plan {plan.recipe}` shows it. Generated: do not edit.", *what,
           "set -euo pipefail", *src, ""]
    if frozen:
        out += [HEADER]
    out += ["# ---- the run: what the Ray lifecycle (recipes/lib/launch.sh) reads " + "-" * 28]
    out += [f"export {k}={word(v)}" for k, v in plan.script_env.items()]
    if not plan.via_ray:
        return "\n".join([*out, "", f"exec {' '.join(word(w) for w in plan.entrypoint)}", ""])
    env = plan.runtime_env
    out += ["", "# ---- job environment: what Ray gives the trainer " + "-" * 46]
    out += [f"export {k}={word(v)}" for k, v in env.items()]
    out += [f"job_env=({' '.join(env)})", "", "# ---- argument blocks " + "-" * 74]
    arrays = []
    for name, words in plan.blocks:
        array = f"{name.upper()}_ARGS"
        arrays.append(array)
        out += _array(array, words)
    out += ["", "# ---- launch " + "-" * 83,
            f"recipe_cmd mkdir -p {' '.join(word(d) for d in plan.mkdirs)}" if plan.mkdirs else ":",
            f'recipe_launch_job {plan.ray_gpus_per_node} {plan.ray_total_gpus} '
            f'"$(recipe_runtime_env_json "${{job_env[@]}}")" -- \\',
            "  " + " ".join(word(w) for w in plan.entrypoint) + (" \\" if arrays else "")]
    out += [f'  "${{{a}[@]}}"' + (" \\" if i < len(arrays) - 1 else "") for i, a in enumerate(arrays)]
    return "\n".join(out) + "\n"
