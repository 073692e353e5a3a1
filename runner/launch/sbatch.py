"""Render the script `recipe sbatch` submits: the allocation, then the values it was rendered with.

The job itself is a static shell file, recipes/lib/sbatch_job.sh (the allocation's Ray nodes, a
bounded readiness wait, `recipe exec` of the frozen plan on the head node, fail-fast if any node's step dies, clean
shutdown on exit or scancel; read it top to bottom). The rendered script is only #SBATCH lines, one
block of `NAME='value'` assignments and a `source` of that file: every value is single-quoted data,
never pasted into shell code. With `--container-runtime none` the same job runs without containers
(clusters with the stack installed, and tests). Secrets are never written into it: they reach the
steps through the environment sbatch exports.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

from runner import __version__
from runner.errors import UsageError
from runner.plan.options import checked

RUNTIMES = ("pyxis", "none")
JOB_SCRIPT = "sbatch_job.sh"  # in recipes/lib
PARAMS_BEGIN = "# ---- parameters: every value is single-quoted data ----"
PARAMS_END = "# ---- end of parameters ----"
MAX_READY_TIMEOUT_S = 86400
IMAGE_BUNDLE_DIR = "/opt/recipe-bundle"  # where the recipe-bundle image keeps the bundle (docker/Dockerfile)


@dataclass(frozen=True)
class SbatchJob:
    recipe: str
    nodes: int
    gpus_per_node: int
    runtime: str  # pyxis | none
    image: str  # pyxis: registry image by digest, or a staged .sqsh path; none: informational
    bundle_dir: str  # the bundle (holding recipes/) as the steps see it: in the image, or a shared path
    recipe_cmd: list[str]  # how the steps call `recipe`
    runs_dir: str  # run directories are created under it, one per job
    inputs_dir: str
    output_dir: str
    run_dir: str  # the run directory the plan is frozen into; the head node runs `recipe exec` on it
    job_lib: str = ""  # recipes/lib as the batch step (on the first node, outside any container) sees it
    image_ref: str = ""  # the pinned reference IMAGE stands for (RECIPE_IMAGE in the job)
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    # with time: Slurm signals the batch script this many seconds before the wall, and the job stops
    # the run (TERM: the trainer saves a checkpoint and exits) while there is time to save
    stop_before_s: int | None = None
    mounts: list[str] = field(default_factory=list)  # extra SRC:DST[:FLAGS] for pyxis
    ready_timeout_s: int = 600
    command_line: str = ""  # the `recipe sbatch ...` that rendered it, for the header


def default_job_lib(bundle_dir: str) -> str:
    """recipes/lib for the batch step: the steps' bundle, unless that is only inside the image;
    then this checkout (which the first node must see at the same path, like the runs dir)."""
    from runner.paths import bundle_root

    if bundle_dir == IMAGE_BUNDLE_DIR:
        return str(bundle_root() / "recipes" / "lib")
    return f"{bundle_dir.rstrip('/') or '/'}/recipes/lib".replace("//", "/")


def _q(v: object) -> str:
    return shlex.quote(str(v))


def _plain_text(flag: str, v: str) -> None:
    """Values may hold any printable text (it is quoted), but no control character: a newline would
    end an #SBATCH line, and Slurm, pyxis and logs read these line by line."""
    bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"{flag} {v!r}: contains the control character {bad!r}")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{flag} {v!r}: is not valid UTF-8") from None


def validate(job: SbatchJob) -> None:
    checked("nodes", job.nodes, "--nodes")  # the options' own bounds: one rule for run, plan and sbatch
    checked("gpus_per_node", job.gpus_per_node, "--gpus-per-node")
    if not 1 <= job.ready_timeout_s <= MAX_READY_TIMEOUT_S:
        raise UsageError(f"--ready-timeout must be 1 to {MAX_READY_TIMEOUT_S} seconds, got {job.ready_timeout_s}")
    if job.stop_before_s is not None and not 1 <= job.stop_before_s <= MAX_READY_TIMEOUT_S:
        raise UsageError(f"--stop-before must be 1 to {MAX_READY_TIMEOUT_S} seconds, got {job.stop_before_s}")
    if job.runtime not in RUNTIMES:
        raise UsageError(f"--container-runtime must be one of {', '.join(RUNTIMES)}, got '{job.runtime}'")
    fields = [("NAME", job.recipe), ("--image", job.image), ("--image", job.image_ref),
              ("--bundle-dir", job.bundle_dir), ("--runs-dir", job.runs_dir), ("--inputs", job.inputs_dir),
              ("--output-dir", job.output_dir),
              ("--run-dir", job.run_dir), ("recipes/lib", job.job_lib), ("--partition", job.partition or ""),
              ("--account", job.account or ""), ("--time", job.time or ""),
              *(("the recipe command", w) for w in job.recipe_cmd),
              *(("mount", m) for m in job.mounts)]
    for flag, v in fields:
        _plain_text(flag, v)
    for flag, v in (("--partition", job.partition), ("--account", job.account), ("--time", job.time)):
        if v is not None and (not v or any(c.isspace() or c in "'\"\\$`" for c in v)):
            raise UsageError(f"{flag} {v!r}: expected a plain Slurm value (no spaces or quotes)")
    if not job.recipe or any(c.isspace() or c in "%/" for c in job.recipe):
        raise UsageError(f"recipe name {job.recipe!r}: cannot be a Slurm job name")
    if any(c.isspace() or c == "%" for c in job.runs_dir):
        raise UsageError(f"--runs-dir {job.runs_dir!r}: the #SBATCH --output path cannot hold spaces or '%'")
    if job.runtime == "pyxis":
        # pyxis splits --container-mounts on ',' and ':'
        for what, path in (("--runs-dir", job.runs_dir), ("--inputs", job.inputs_dir),
                           ("--output-dir", job.output_dir), ("--run-dir", job.run_dir)):
            if any(c in path for c in ",:"):
                raise UsageError(f"{what} {path!r}: pyxis cannot mount a path containing ',' or ':'")


def _sbatch_lines(job: SbatchJob) -> list[str]:
    lines = [
        f"#SBATCH --job-name=recipe-{job.recipe}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --exclusive",
    ]
    if job.gpus_per_node > 0:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    if job.account:
        lines.append(f"#SBATCH --account={job.account}")
    if job.time:
        lines.append(f"#SBATCH --time={job.time}")
        if job.stop_before_s:
            lines.append(f"#SBATCH --signal=B:USR1@{job.stop_before_s}")
    lines.append(f"#SBATCH --output={job.runs_dir}/%x-%j.out")
    return lines


def params(job: SbatchJob) -> list[tuple[str, str | list[str]]]:
    """The parameter block, in order: what recipes/lib/sbatch_job.sh reads (documented there)."""
    return [
        ("RECIPE", job.recipe), ("NODES", str(job.nodes)), ("GPUS_PER_NODE", str(job.gpus_per_node)),
        ("READY_TIMEOUT", str(job.ready_timeout_s)), ("RUNTIME", job.runtime), ("IMAGE", job.image),
        ("IMAGE_REF", job.image_ref), ("BUNDLE", job.bundle_dir), ("RUNS_DIR", job.runs_dir),
        ("INPUTS_DIR", job.inputs_dir), ("OUTPUT_DIR", job.output_dir), ("RUN_DIR", job.run_dir),
        ("RECIPE_CMD", list(job.recipe_cmd)), ("EXTRA_MOUNTS", list(job.mounts)), ("JOB_LIB", job.job_lib),
    ]


def _assignment(name: str, value: str | list[str]) -> str:
    if isinstance(value, list):
        return f"{name}=({' '.join(_q(w) for w in value)})"
    return f"{name}={_q(value)}"


def render(job: SbatchJob) -> str:
    if not job.job_lib:
        job = replace(job, job_lib=default_job_lib(job.bundle_dir))
    validate(job)
    command_line = " ".join((job.command_line or f"recipe sbatch {job.recipe}").split())
    gpus = f" x {job.gpus_per_node} GPU(s)" if job.gpus_per_node else ""
    lines = [
        "#!/bin/bash",
        "# shellcheck disable=SC2034 # the parameters are read by the job sourced at the end",
        f"# Generated by recipe-bundle {__version__}: {command_line}",
        "#",
        f"# Runs recipe {job.recipe} on {job.nodes} node(s){gpus}. The job is {JOB_SCRIPT} in JOB_LIB below",
        "# (static; read it for what happens, in order); this file holds the allocation and the values",
        "# it was rendered with, as quoted data.",
        "# The head node runs `recipe exec` on the plan frozen in RUN_DIR below: `recipe sbatch --submit`",
        "# writes plan.json, run.sh and run.json there, then submits this file.",
        "# Secrets (WANDB_API_KEY, HF_TOKEN, ...) are not in this file: export them before sbatch.",
        *_sbatch_lines(job),
        "set -euo pipefail",
        "",
        PARAMS_BEGIN,
        *(_assignment(n, v) for n, v in params(job)),
        PARAMS_END,
        "",
        f'[[ -f "$JOB_LIB/{JOB_SCRIPT}" ]] || {{ echo "recipe: error: $JOB_LIB/{JOB_SCRIPT} not found on $(hostname):'
        ' the first node must see the recipe bundle at that path" >&2; exit 3; }',
        "# shellcheck source=/dev/null",
        f'source "$JOB_LIB/{JOB_SCRIPT}"',
        "",
    ]
    return "\n".join(lines)
