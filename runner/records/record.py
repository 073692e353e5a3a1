"""Run directories and their `run.json` provenance record.

A run directory is never reused nor shared: its first user publishes a claim file atomically
(`claim`), so of two runs started into one directory exactly one proceeds. run.json is rewritten
atomically (temp file, fsync, rename) at each stage: "running" at launch, then "succeeded",
"failed", "gate-failed" or "interrupted" at the end, whichever way the run ends
(runner/launch/run.py finalize_on_error). A run killed so hard that it could not say so stays
"running"; `load_record` then reports it as "interrupted (stale)" once its process is gone, so it
is never mistaken for a finished one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Any

from runner.atomicfile import write_text_atomic
from runner.console import safe
from runner.errors import RecipeError, UsageError
from runner.gate.files import RECORD_MAX, read_regular
from runner.recipe import Recipe
from runner.secrets import redact_env

RECORD = "run.json"
CLAIM_FILE = ".claim-run"
SCHEMA = 1


class RunStatus(StrEnum):
    """run.json's status as this runner writes it. A record read back is data and may hold any
    string: `status_of` gives None for one this runner never writes, shown as is, never acted on."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    GATE_FAILED = "gate-failed"
    INTERRUPTED = "interrupted"
    PREFLIGHT_FAILED = "preflight-failed"   # a docker/Slurm job whose in-image checks refused (recipe exec)
    SUBMITTED = "submitted"   # `recipe sbatch --submit` froze the plan; its job's `recipe exec` makes it RUNNING
    STALE = "interrupted (stale)"   # how a RUNNING record whose process is gone reads; never written


def status_of(record: dict[str, Any] | None) -> RunStatus | None:
    v = (record or {}).get("status")
    return RunStatus(v) if isinstance(v, str) and v in RunStatus.__members__.values() else None

# Environment prefixes worth recording (values of secrets are replaced by their names).
ENV_PREFIXES = ("RECIPE_", "NCCL_", "CUDA_", "NVTE_", "CUBLAS_", "PYTHONHASHSEED", "TORCH_", "RAY_", "SLURM_",
                "MASTER_", "WANDB_", "HF_", "OMP_", "MKL_")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def create_run_dir(runs_dir: Path, run_id: str) -> Path:
    """A new run directory under runs_dir, claimed for this process."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    d = runs_dir / run_id
    try:
        d.mkdir()
    except FileExistsError:
        raise UsageError(f"{d}: run directory already exists; run directories are never reused") from None
    claim(d, "run directory")
    return d


def claim_run_dir(path: Path) -> Path:
    """Use an explicit --run-dir: created if absent; refused if it already holds or is claimed by a run."""
    path = path.resolve()
    if (path / RECORD).exists():
        raise UsageError(f"--run-dir {path}: already holds a run ({RECORD}); run directories are never reused")
    path.mkdir(parents=True, exist_ok=True)
    return claim(path, "--run-dir")


def claim(path: Path, what: str) -> Path:
    """Claim `path` for this process with an O_EXCL claim file, so two runs can never share it.

    Exactly one of two racing `recipe run --run-dir SAME` wins the create; the other is refused.
    (A docker or Slurm run's `recipe exec` claims nothing: it carries on the run that claimed it.)
    """
    f = path / CLAIM_FILE
    # The claim is written under a private name and then hard-linked to the shared one: link() fails
    # if the name exists, like O_EXCL, and a loser never reads a claim whose content is not there yet.
    body = json.dumps({"pid": os.getpid(), "hostname": socket.gethostname(), "claimed_at": now()}) + "\n"
    tmp = path / f"{f.name}.{os.getpid()}.tmp"
    tmp.write_text(body, encoding="utf-8")
    try:
        _publish(tmp, f, body)
    except FileExistsError:
        try:
            holder = json.loads(read_regular(f, root=path, limit=RECORD_MAX, what="claim"))
            who = f"pid {holder['pid']} on {holder['hostname']} since {holder['claimed_at']}"
        except (OSError, ValueError, KeyError, TypeError, RecipeError, RecursionError):
            who = "another run"
        raise UsageError(safe(f"{what} {path}: already claimed by {who} ({f.name}); "
                              "run directories are never shared or reused")) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish(tmp: Path, name: Path, body: str) -> None:
    """`name` appears holding `body` (tmp's content), or FileExistsError if it already exists."""
    try:
        os.link(tmp, name)
    except FileExistsError:
        raise
    except OSError:
        # A filesystem without hard links: O_EXCL still decides the race, the content follows it.
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)


def write_json_atomic(path: Path, obj: Any) -> None:
    """The JSON text is made first, so an object that cannot be written leaves nothing behind. Every
    string is written without the credentials of a URL in it (redact_urls)."""
    write_text_atomic(path, json.dumps(redact_urls(obj), indent=2, sort_keys=False) + "\n")


# `scheme://userinfo@`: a URL's user and password (HF_ENDPOINT=https://user:pass@mirror, a token as the
# user of WANDB_BASE_URL). Anchored on "://" and stopping at the first '/', so it runs in linear time.
_URL_USERINFO = re.compile(r"://[^/?#@\s]+@")
REDACTED = "<redacted>"


def redact_urls(obj: Any) -> Any:
    """A copy of a JSON-able object with the userinfo of every URL in its strings replaced by <redacted>."""
    if isinstance(obj, str):
        return _URL_USERINFO.sub(f"://{REDACTED}@", obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: redact_urls(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_urls(v) for v in obj]
    return obj


def recipe_file_hashes(recipe: Recipe) -> dict[str, str]:
    """{path relative to recipes/: sha256} of every file that defines the recipe (its tag manifest's list)."""
    from runner.inputs.tagmanifest import build

    return {e.path: e.sha256 for e in build(recipe)[0].entries}


# Files that record what was learned from runs, not how to launch one: blessing a run (which
# writes the reference series, and so the tag manifest) must not make a run of the same recipe stale.
NOT_LAUNCH_FILES = ("/reference_metrics.jsonl", "/recipe.sha256")


def changed_recipe_files(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The recipe files (relative to recipes/) whose hash differs between a run's record and now."""
    return sorted(p for p in set(recorded) | set(now)
                  if recorded.get(p) != now.get(p) and not p.endswith(NOT_LAUNCH_FILES))


def recipe_digest(hashes: dict[str, str]) -> str:
    """sha256 over the sha256sum-style lines of the recipe's files: changes when any byte changes."""
    text = "".join(f"{h}  {p}\n" for p, h in sorted(hashes.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def recorded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ if environ is None else environ)
    # only names a record may hold (check_fields): one it could not read back is not worth recording
    keep = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES) and ENV_NAME.fullmatch(k)}
    return dict(sorted(redact_env(keep).items()))


class RunRecord:
    """The mutable record of one run, saved atomically on every change of stage."""

    def __init__(self, run_dir: Path, data: dict[str, Any]):
        self.dir = run_dir
        self.data = data

    @classmethod
    def running(cls, directory: Path, **fields: Any) -> RunRecord:
        """A "running" record, not yet saved: the caller saves it where a failure can still finish it."""
        data = {"schema": SCHEMA, "status": RunStatus.RUNNING, "started_at": now(), "ended_at": None,
                "exit_code": None, "pid": os.getpid(), "hostname": socket.gethostname(), **fields}
        return cls(directory, data)

    def update(self, **fields: Any) -> None:
        # written first: a write that fails (a full disk) leaves the record as it was on disk and here,
        # so that whoever finishes it later knows it is still unfinished
        data = {**self.data, **fields}
        write_json_atomic(self.dir / RECORD, data)
        self.data = data

    def finish(self, status: RunStatus, exit_code: int, **fields: Any) -> None:
        assert status not in (RunStatus.RUNNING, RunStatus.STALE), status
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


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """run.json of a directory, type-checked field by field; None if there is none.

    Anything malformed (not a regular file inside the run directory, over RECORD_MAX, not UTF-8, not
    JSON, not an object, a field of the wrong type, an integer of more than MAX_DIGITS digits, an
    environment name that is not one) is a one-line UsageError naming the file and the field.
    """
    run_dir = Path(run_dir)
    f = run_dir / RECORD
    try:
        raw = read_regular(f, root=run_dir, limit=RECORD_MAX, what="record")
    except FileNotFoundError:
        return None
    where = safe(f)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 (byte {e.start}); not a run record of this runner") from None
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise UsageError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(data).__name__}")
    check_fields(data, f)
    return data


# No integer the runner records comes near int64's 19 digits; a longer one is not a record of ours
# (and one past 4300 digits is refused by int() itself).
MAX_DIGITS = 19


class _TooLong:
    def __init__(self, digits: int):
        self.digits = digits


def _bounded_int(text: str) -> int | _TooLong:
    digits = len(text.lstrip("-"))
    return _TooLong(digits) if digits > MAX_DIGITS else int(text)


def _find_too_long(data: Any) -> tuple[str, _TooLong] | None:
    """The dotted path of the first over-long integer, found without recursion (JSON nests deep)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, _TooLong):
            return path, v
        if isinstance(v, dict):
            stack += [(f"{path}.{k}" if path else str(k), x) for k, x in reversed(v.items())]
        elif isinstance(v, list):
            stack += [(f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v)))]
    return None


_STR, _INT, _DICT, _LIST = (str,), (int,), (dict,), (list,)
# run.json field -> (allowed types, element type of a dict's values or a list's items, or None)
FIELD_TYPES: dict[str, tuple[tuple[type, ...], tuple[type, ...] | None, bool]] = {
    # name: (types, element types, None allowed)
    "status": (_STR, None, False), "recipe": (_STR, None, False), "recipe_digest": (_STR, None, False),
    "run_id": (_STR, None, False), "cell": (_STR, None, False), "image": (_STR, None, True),
    "backend": (_STR, None, False), "run_dir": (_STR, None, False), "output_dir": (_STR, None, False),
    "inputs_dir": (_STR, None, False), "started_at": (_STR, None, True), "ended_at": (_STR, None, True),
    "determinism": (_STR, None, False), "hostname": (_STR, None, False),
    "exit_code": (_INT, None, True), "script_exit_code": (_INT, None, True), "pid": (_INT, None, True),
    "nodes": (_INT, None, False), "gpus_per_node": (_INT, None, False),
    "recipe_files": (_DICT, _STR, False), "script_env": (_DICT, _STR, False), "job_env": (_DICT, _STR, False),
    "environment": (_DICT, _STR, False), "seeds": (_DICT, None, False),
    "argv": (_LIST, _STR, False), "forward_args": (_LIST, _STR, False), "preflight": (_LIST, _DICT, False),
    "preflight_skipped": (_LIST, _STR, False), "secrets_passed": (_LIST, _STR, False),
    "bundle": (_DICT, None, True), "host": (_DICT, None, True), "gate": (_DICT, None, True),
    "layout": (_DICT, None, True), "inputs_verification": (_DICT, None, True), "doctor": (_DICT, None, True),
    "resume_of": (_DICT, _STR, True),
}
_TYPE_WORDS = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


# An environment name as POSIX defines a portable one: what the runner records (recorded_env) and
# what replay can set again; anything else (`A=B`, a control character) is not from a record of ours.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_FIELDS = ("script_env", "job_env", "environment")


def check_fields(data: dict[str, Any], f: Path) -> None:
    too_long = _find_too_long(data)
    if too_long:
        raise UsageError(f"{safe(f)}: field '{safe(too_long[0])}': an integer of {too_long[1].digits} digits; "
                         f"a run record holds none longer than {MAX_DIGITS}")
    for name in ENV_FIELDS:
        env = data.get(name)
        bad = next((k for k in env if not ENV_NAME.fullmatch(k)), None) if isinstance(env, dict) else None
        if bad is not None:
            raise UsageError(f"{safe(f)}: field '{name}': '{safe(bad)}' is not an environment variable name "
                             "(letters, digits and '_', not starting with a digit)")
    for name, (types, elem, nullable) in FIELD_TYPES.items():
        if name not in data or (data[name] is None and nullable):
            continue
        v = data[name]
        want = _TYPE_WORDS[types[0]]
        if not isinstance(v, types) or isinstance(v, bool):
            raise UsageError(f"{safe(f)}: field '{name}': expected {want}, got {_json_type(v)}")
        if elem:
            items = v.values() if isinstance(v, dict) else v
            bad = next((x for x in items if not isinstance(x, elem) or isinstance(x, bool)), None)
            if bad is not None or any(x is None for x in items):
                raise UsageError(f"{safe(f)}: field '{name}': expected {want} of {_TYPE_WORDS[elem[0]]}s, "
                                 f"holds {_json_type(bad)}")


def _json_type(v: Any) -> str:
    return {type(None): "null", bool: "a boolean", str: "a string", int: "an integer", float: "a number",
            dict: "an object", list: "a list"}.get(type(v), type(v).__name__)


def load_record(run_dir: Path) -> dict[str, Any]:
    """run.json with `status` made honest: a "running" record whose process is gone is interrupted."""
    data = read_record(run_dir)
    if data is None:
        raise RecipeError(f"{safe(Path(run_dir) / RECORD)}: no run record here (is {safe(run_dir)} a run directory?)",
                          2)
    if is_stale(data):
        data["status"] = RunStatus.STALE
    return data


def is_stale(data: dict[str, Any]) -> bool:
    """A "running" record of this host whose process is gone (killed too hard to say so)."""
    if status_of(data) != RunStatus.RUNNING or data.get("hostname") != socket.gethostname():
        return False
    pid = data.get("pid")
    return isinstance(pid, int) and not _alive(pid)
