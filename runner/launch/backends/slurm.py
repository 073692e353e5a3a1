"""The Slurm backend: the sbatch script (runner/launch/sbatch.py) built from a recipe or a Launch, its
submission, and the checks that this machine can submit/run it.

- `recipe sbatch NAME ...` freezes the plan into a run directory on the shared file system and
  submits the script (job_from_launch + submit_script), whose head node runs `recipe exec` on it.
- `recipe run NAME --backend slurm` inside an allocation (salloc) runs the same script with bash,
  its head node running `recipe exec RUN_DIR` on the plan frozen there (the shared file system's
  paths): command/run/preflight below, called by runner/launch/run.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from runner.atomicfile import write_text_atomic
from runner.checks import Check, CheckStatus, fail, na, ok
from runner.errors import EXIT_FAIL, EXIT_MISSING, EXIT_PREFLIGHT, RecipeError, UsageError
from runner.image import enroot
from runner.image.ref import is_pinned, parse_image
from runner.launch.sbatch import IMAGE_BUNDLE_DIR, SbatchJob, default_job_lib, render
from runner.launch.script import run_script
from runner.paths import bundle_root

SCRIPT_NAME = "slurm-job.sh"


def recipe_cmd(runtime: str, bundle_dir: str) -> list[str]:
    """How a step calls `recipe`."""
    if runtime == "none":
        exe = Path(sys.executable).parent / "recipe"
        return [str(exe)] if exe.is_file() else [sys.executable, "-m", "runner.cli"]
    if bundle_dir == IMAGE_BUNDLE_DIR:
        return ["recipe"]  # the recipe-bundle image has it on PATH
    # The pinned upstream image plus this checkout mounted at its own path (named explicitly: an
    # image's own ENV wins over the job's environment under pyxis).
    return ["env", f"RECIPE_BUNDLE_ROOT={bundle_dir}", f"PYTHONPATH={bundle_dir}", "python3", "-m", "runner.cli"]


def container_image(ref: str, runtime: str, sqsh_dir: Path | None) -> str:
    """The --container-image value: a staged .sqsh keyed by digest, or the registry image by digest."""
    if runtime != "pyxis":
        return ref
    if ref == "none":
        raise UsageError("the recipe pins no image ([image] reference = \"none\"): use --container-runtime none, "
                         "or --image REPO@sha256:DIGEST")
    if sqsh_dir is not None:
        path = sqsh_dir.resolve() / enroot.sqsh_name(ref)
        if not path.is_file():
            raise RecipeError(f"--sqsh-dir: staged image {path} not found; create it with `recipe image sqsh "
                              f"NAME --output-dir {path.parent}` (enroot >= 4.0), or drop --sqsh-dir to pull "
                              "by digest", EXIT_MISSING)
        return str(path)
    if not parse_image(ref).pinned:
        raise UsageError(f"image {ref!r} is not pinned by digest (@sha256:...); pyxis would pull whatever the tag "
                         "points at today")
    return enroot.pyxis_image(ref)


def _mounts(runtime: str, bundle_dir: str) -> list[str]:
    if runtime == "pyxis" and bundle_dir != IMAGE_BUNDLE_DIR:
        return [f"{bundle_dir}:{bundle_dir}:ro"]
    return []


def sbatch_exe() -> str:
    sbatch = shutil.which("sbatch")
    if not sbatch:
        raise RecipeError("sbatch not found on PATH; run `recipe sbatch --submit` on a Slurm login node",
                          EXIT_PREFLIGHT)
    return sbatch


def submit_script(sbatch: str, job: SbatchJob, script: str) -> str:
    """Write the script into the run directory (beside the plan it carries out) and `sbatch --parsable`
    it; returns the job id."""
    path = Path(job.run_dir) / SCRIPT_NAME
    write_text_atomic(path, script)
    path.chmod(0o755)
    proc = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RecipeError(f"sbatch {path} exited {proc.returncode}: {last}", EXIT_FAIL)
    return proc.stdout.strip().split(";")[0]


def submit_continuation(sbatch: str, job: SbatchJob, after: str) -> str:
    """A job that runs `recipe resume RUN_DIR` if job `after` did not succeed (stopped before its wall,
    or failed), in an allocation of the same shape: the run continues from its checkpoint as a new run
    linked to it (resume_of). A dependency, not --requeue: a requeued job would run the same script on
    the same run directory, whose record is then finished. afternotok with --kill-on-invalid-dep: after
    a job that succeeded Slurm cancels this one unrun, so nothing runs twice. Returns the job id."""
    gpus = [f"--gpus-per-node={job.gpus_per_node}"] if job.gpus_per_node else []
    where = [f"--{k}={v}" for k, v in (("partition", job.partition), ("account", job.account)) if v]
    # the batch step runs on the first node, outside any container, as `recipe run --backend slurm` does
    resume = [*recipe_cmd("none", job.bundle_dir), "resume", "--backend", "slurm", job.run_dir]
    argv = [sbatch, "--parsable", f"--dependency=afternotok:{after}", "--kill-on-invalid-dep=yes",
            f"--job-name=recipe-{job.recipe}-resume", f"--nodes={job.nodes}", "--ntasks-per-node=1", "--exclusive",
            *gpus, *where, f"--output={job.runs_dir}/%x-%j.out",
            f"--export=ALL,RECIPE_CONTAINER_RUNTIME={job.runtime}", "--wrap", shlex.join(resume)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RecipeError(f"sbatch of the job that resumes {job.run_dir} exited {proc.returncode}: {last}; "
                          f"job {after} runs; resume it with `recipe resume {job.run_dir}` in an allocation",
                          EXIT_FAIL)
    return proc.stdout.strip().split(";")[0]


# ---- backend interface (recipe run --backend slurm, inside an allocation) ------------------

NAME = "slurm"
RUNS_EXEC = True


def runtime() -> str:
    return os.environ.get("RECIPE_CONTAINER_RUNTIME", "pyxis")


def job_view(run_id: str) -> None:
    return None  # a shared file system: the head node sees this host's paths


def job_from_launch(launch, rt: str | None = None, *, sqsh_dir: Path | None = None, bundle_dir: str | None = None,
                    ready_timeout: int = 600, command_line: str = "", partition: str | None = None,
                    account: str | None = None, time: str | None = None, stop_before: int | None = None) -> SbatchJob:
    """The sbatch job that carries out `launch`, frozen in its run directory: `recipe run --backend
    slurm` (inside an allocation) and `recipe sbatch` (allocation: partition, account, time)."""
    rt = rt or runtime()
    bundle = bundle_dir or str(bundle_root())
    return SbatchJob(
        recipe=launch.recipe.name, nodes=launch.nodes, gpus_per_node=launch.gpus_per_node, runtime=rt,
        image=container_image(launch.image, rt, sqsh_dir), image_ref=launch.image, bundle_dir=bundle,
        recipe_cmd=recipe_cmd(rt, bundle), job_lib=default_job_lib(bundle),
        runs_dir=str(Path(launch.run_dir).parent), inputs_dir=str(launch.inputs_dir),
        output_dir=str(launch.output_dir), run_dir=str(launch.run_dir), mounts=_mounts(rt, bundle),
        ready_timeout_s=ready_timeout, command_line=command_line or f"recipe run {launch.recipe.name} --backend slurm",
        partition=partition, account=account, time=time, stop_before_s=stop_before if time else None)


def describe(launch) -> tuple[dict, str]:
    """For `recipe plan --backend slurm`: the sbatch script the allocation runs."""
    script = render(job_from_launch(launch))
    return {"sbatch_script": script}, script


def command(launch) -> list[str]:
    return ["bash", str(Path(launch.run_dir) / SCRIPT_NAME)]


def commands(launch) -> list[list[str]]:
    return [command(launch)]


def run(launch, on_start=None, on_interrupt=None, on_failure=None) -> tuple[int, bool]:
    """Render the script into the run directory and run it with bash in this allocation."""

    path = Path(launch.run_dir) / SCRIPT_NAME
    write_text_atomic(path, render(job_from_launch(launch)))
    return run_script(path, {}, Path(launch.run_dir) / "logs" / "slurm.log", on_start=on_start,
                      on_interrupt=on_interrupt)


# ---- preflight ------------------------------------------------------------------------------

def check_slurm(in_allocation: bool = True) -> Check:
    missing = [c for c in ("sbatch", "srun", "scontrol") if not shutil.which(c)]
    if missing:
        return fail("slurm", f"{', '.join(missing)} not found on PATH",
                       "run on a Slurm login node or inside an allocation (salloc)")
    if in_allocation and not os.environ.get("SLURM_JOB_ID"):
        return fail("slurm", "not inside a Slurm allocation (SLURM_JOB_ID is unset)",
                       "salloc --nodes N --exclusive first, or use `recipe sbatch NAME --nodes N --submit`")
    where = f"allocation {os.environ['SLURM_JOB_ID']}" if in_allocation else "sbatch/srun present"
    return ok("slurm", where)


def check_pyxis(rt: str) -> Check:
    if rt != "pyxis":
        return na("pyxis", f"container runtime {rt}")
    srun = shutil.which("srun")
    if not srun:
        return fail("pyxis", "srun not found", "install Slurm client commands")
    out = subprocess.run([srun, "--help"], capture_output=True, text=True, timeout=30, check=False)
    if "container-image" not in out.stdout + out.stderr:
        return fail("pyxis", "srun has no --container-image: the pyxis SPANK plugin is not loaded",
                       "install pyxis (https://github.com/NVIDIA/pyxis) in plugstack.conf, or "
                       "--container-runtime none where the stack is installed on the nodes")
    return ok("pyxis", "srun --container-image available")


def check_enroot(rt: str, image: str, enroot_bin: str = "enroot") -> Check:
    if rt != "pyxis":
        return na("enroot", f"container runtime {rt}")
    if not shutil.which(enroot_bin):
        return Check("enroot", CheckStatus.WARN, "enroot not on this host's PATH (the compute nodes need >= 4.0 "
                     "for digest images)", "or stage a .sqsh with `recipe image sqsh`")
    try:
        v = enroot.enroot_version(enroot_bin)
    except RecipeError as e:
        return fail("enroot", e.message, "check the enroot installation")
    if is_pinned(image) and v < enroot.MIN_DIGEST_VERSION:
        return fail("enroot", f"enroot {'.'.join(map(str, v))} cannot pull by digest (needs >= 4.0)",
                       "upgrade enroot, or stage the image: `recipe image sqsh NAME` where enroot >= 4.0 runs")
    return ok("enroot", f"enroot {'.'.join(map(str, v))}")


def checks(launch) -> dict:
    return {
        "slurm": lambda: check_slurm(in_allocation=True),
        "pyxis": lambda: check_pyxis(runtime()),
        "enroot": lambda: check_enroot(runtime(), launch.image),
    }
