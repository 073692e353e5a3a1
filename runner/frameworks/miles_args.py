"""Preflight check `args`: miles' own parser judges the plan's argv, with the plan's job environment.

Where miles is importable by the job's interpreter (inside the pinned image), a child interpreter
runs `miles.utils.arguments.parse_args()` on exactly the argv and job environment the trainer gets,
and nothing else: no Ray, no torch.distributed, no GPU work. What that does, at miles 78527b91 with
radixark/Megatron-LM 37f91617:

- argparse over miles' flags, Megatron's and SGLang's server args (`--sglang-*`): an unknown flag or
  a value of the wrong type ends in `parser.error`;
- the HF config is loaded with trust_remote_code=True from --hf-checkpoint (miles/utils/hf_config.py)
  and compared with the model flags (hf_validate_args);
- miles_validate_args, then Megatron's validate_args: world size (actor_num_nodes x
  actor_num_gpus_per_node) divisible by TP x PP x CP, CUDA_DEVICE_MAX_CONNECTIONS=1 with TP or CP > 1
  before Blackwell (it reads cuda:0's architecture, so a GPU must be visible), NCCL_ALGO in
  deterministic mode; then SGLang's validate_args.

Each problem is reported on a line of its own: unknown flags one per flag, a bad value, or the
first failed validation (the parser stops there) with the file and line that raised it. Outside the
image the check says it was skipped and why; the run record keeps either.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.checks import Check, CheckStatus, fail, na, ok
from runner.plan.spec import Plan
from runner.secrets import is_secret

NAME = "args"
DEFAULT_TIMEOUT_S = 300

# Runs in the job's interpreter with the job's PYTHONPATH: stdlib only until miles is imported.
# argv: OUT_JSON SCRIPT ARGV... ; the result goes to OUT_JSON (stdout/stderr carry miles' own logging).
CHILD = r"""
import argparse, importlib.util, json, sys, traceback
out, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
def emit(doc):
    with open(out, "w") as f:
        json.dump(doc, f)
try:
    found = importlib.util.find_spec("miles") is not None
except Exception as e:
    found = False
if not found:
    emit({"status": "absent", "path": sys.path})
    sys.exit(0)
try:
    from miles.utils.arguments import parse_args
except BaseException as e:
    emit({"status": "import-error", "error": f"{type(e).__name__}: {e}"})
    sys.exit(0)
class ParserError(Exception):
    pass
def error(self, message):
    raise ParserError(message)
argparse.ArgumentParser.error = error  # every parser miles builds reports here instead of exiting
sys.argv = [script, *argv]
try:
    parse_args()
except ParserError as e:
    emit({"status": "rejected", "message": str(e)})
except BaseException as e:
    frames = traceback.extract_tb(e.__traceback__)
    where = f"{'/'.join(frames[-1].filename.split('/')[-3:])}:{frames[-1].lineno}" if frames else "?"
    emit({"status": "invalid", "type": type(e).__name__, "message": str(e), "where": where})
else:
    emit({"status": "ok"})
"""


def problem_lines(result: dict) -> list[str]:
    """One line per problem the parser reported."""
    status = result.get("status")
    if status == "rejected":
        msg = result.get("message", "")
        if msg.startswith("unrecognized arguments:"):
            lines: list[str] = []
            for word in msg.split(":", 1)[1].split():
                if word.startswith("-") or not lines:
                    lines.append(f"unknown flag {word}")
                else:
                    lines[-1] += f" {word}"
            return lines
        return [f"bad value: {msg}"]
    if status == "invalid":
        msg = " ".join(str(result.get("message", "")).split()) or "(no message)"
        return [f"failed validation ({result.get('type')} at {result.get('where')}): {msg}"]
    if status == "import-error":
        return [f"miles could not be imported: {result.get('error')}"]
    return []


def job_process_env(plan: Plan, environ: dict[str, str] | None = None) -> dict[str, str]:
    """What the trainer's process sees: the run script's environment (this one, as Ray inherits it)
    overlaid with the job env. Secrets are left out: parsing needs none."""
    env = dict(os.environ if environ is None else environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # as run_script does
    env.update(plan.job_env)
    return {k: v for k, v in env.items() if not is_secret(k)}


def run_parser(interpreter: str, script: str, argv: list[str], env: dict[str, str],
               timeout: float, child: str = CHILD) -> tuple[dict, str]:
    """(result, last lines of the child's output). The child (CHILD, or another program taking the
    same OUT_JSON SCRIPT ARGV...) runs in a session of its own, so a timeout ends it and anything it
    started by its process group id."""
    with tempfile.TemporaryDirectory(prefix="recipe-argcheck-") as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.Popen([interpreter, "-c", child, str(out), script, *argv], env=env, cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return {"status": "timeout"}, ""
        tail = "\n".join(output.strip().splitlines()[-5:])
        try:
            return json.loads(out.read_text()), tail
        except (OSError, ValueError):
            return {"status": "crashed", "exit_code": proc.returncode}, tail


def check_args(recipe, plan: Plan, environ: dict[str, str] | None = None) -> Check:
    framework = recipe.framework
    if framework != "miles":
        return na(NAME, f"framework {framework!r}: no miles parser to ask")
    if len(plan.entrypoint) < 2:
        return na(NAME, "the plan has no trainer entry point")
    env = job_process_env(plan, environ)
    interpreter = shutil.which(plan.entrypoint[0], path=env.get("PATH"))
    if interpreter is None:
        return skipped(f"the job's interpreter {plan.entrypoint[0]!r} is not on PATH", plan)
    hf = flag_value(plan.argv, "--hf-checkpoint")
    if hf and not (Path(hf) / "config.json").is_file():
        return skipped(f"--hf-checkpoint {hf} has no config.json yet (miles loads it while parsing; "
                       "see the inputs check)", plan, interpreter)
    timeout = float(os.environ.get("RECIPE_ARGS_CHECK_TIMEOUT", DEFAULT_TIMEOUT_S))
    t0 = time.monotonic()
    result, tail = run_parser(interpreter, plan.entrypoint[1], plan.argv, env, timeout)
    seconds = round(time.monotonic() - t0, 1)
    data = {"ran": True, "interpreter": interpreter, "pythonpath": env.get("PYTHONPATH", ""), "seconds": seconds,
            "result": result}
    status = result.get("status")
    if status == "absent":
        return skipped(f"miles is not importable by {interpreter} with PYTHONPATH={env.get('PYTHONPATH', '')!r} "
                       "(not inside the pinned image)", plan, interpreter)
    if status == "ok":
        check = ok(NAME, f"miles' parser accepts the argv ({len(plan.argv)} words) and its validation "
                            f"passes with the job env ({seconds:g} s)")
    elif status == "timeout":
        check = fail(NAME, f"miles' parser did not finish within {timeout:g} s",
                        "RECIPE_ARGS_CHECK_TIMEOUT=<seconds> to wait longer, or --skip-preflight args")
    elif status == "crashed":
        check = fail(NAME, f"the parser's interpreter died (exit {result.get('exit_code')}): "
                              f"{(tail.splitlines() or ['no output'])[-1]}", "--skip-preflight args to proceed")
    else:
        lines = problem_lines(result)
        data["lines"] = lines
        check = fail(NAME, f"miles rejects the launch ({len(lines)} problem(s)):\n" +
                        "\n".join(lines),
                        f"`recipe plan {recipe.name}` shows the argv and job env miles was given; fix the run "
                        "script or model_args.txt (or the image, if its miles is not the pinned one)")
    check.data = data
    return check


def skipped(why: str, plan: Plan, interpreter: str | None = None, name: str = NAME) -> Check:
    """A check of the job's interpreter (`args`, `model`) that could not run here, and why."""
    return Check(name, CheckStatus.SKIPPED, f"not run: {why}",
                 data={"ran": False, "reason": why, "interpreter": interpreter, "entrypoint": plan.entrypoint})


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, word in enumerate(argv[:-1]):
        if word == flag:
            return argv[i + 1]
    return None
