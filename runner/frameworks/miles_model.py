"""Preflight check `model`: the model Megatron will build, read from the real stack, equals the recipe.

In bridge mode miles does not build the model from the command line: radixark/miles 78527b91,
miles/backends/megatron_utils/model_provider.py:163-169, builds
`AutoBridge.from_hf_pretrained(hf_checkpoint, trust_remote_code=True).to_megatron_provider(load_weights=False)`
from the checkpoint's config.json, copies runtime fields from its arguments
(`_apply_bridge_runtime_config`, :27-96), then `provider.finalize()`. Which bridge class builds it
depends on whether miles' bridge plugin loaded (miles/backends/megatron_utils/__init__.py:23-26 only
logs a warning when it does not).

Where miles and megatron.bridge are importable by the job's interpreter (inside the image), a child
interpreter with the job's environment does exactly those steps on the launch's argv, in that order,
with no GPU work (no weights, no process groups, no `provide()`), and reports the built provider's
fields, the bridge class and the warnings logged while miles loaded. This module then compares the
provider with what the recipe claims:

- every model flag of model_args.txt, as miles' parser read it (`args.<dest>`), against the provider
  field Megatron would make of it (core_transformer_config_from_args's names);
- the fields the model family states from the recipe's own hf_config.json (`provider_claims`), such
  as the layer pattern;
- the bridge class the recipe names (`[miles] bridge` in recipe.toml), and no plugin-load warning.

A difference the recipe knows about and accepts, with its reason, is listed in recipe.toml
(`[miles.accepted_model_differences]`) and shown as a note; any other difference, a failed
`finalize()`, the wrong bridge or a plugin warning fails the check, one line each.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.checks import Check, fail, na, ok
from runner.errors import UsageError
from runner.frameworks import miles_args, options_of
from runner.frameworks.base import fatal_reason
from runner.frameworks.miles_bridge import COPIED_FLAGS
from runner.frameworks.miles_log import MILES_PATTERNS

NAME = "model"
DEFAULT_TIMEOUT_S = 600
WHERE = "miles 78527b91 model_provider.py:163-169"

# Megatron argument dest -> the TransformerConfig field core_transformer_config_from_args makes of it,
# where the names differ (radixark/Megatron-LM 37f91617, megatron/training/arguments.py:1400-1455).
# A `not ` prefix: the field is the negation of the argument.
FIELD_OF_DEST = {
    "num_experts": "num_moe_experts",
    "untie_embeddings_and_output_weights": "not share_embeddings_and_output_weights",
    "decoder_first_pipeline_num_layers": "num_layers_in_first_pipeline_stage",
    "decoder_last_pipeline_num_layers": "num_layers_in_last_pipeline_stage",
}
# Arguments Megatron reads while parsing but that are no TransformerConfig field of their own.
NOT_A_FIELD = {"group_query_attention", "make_vocab_size_divisible_by"}

COPIED_FIELDS = set(COPIED_FLAGS.values())  # what _apply_bridge_runtime_config sets from the argv

# Runs in the job's interpreter with the job's environment: stdlib only until miles is imported.
# argv: OUT_JSON SCRIPT ARGV... ; the result goes to OUT_JSON (stdout/stderr carry the stack's logging).
CHILD = r"""
import argparse, dataclasses, enum, importlib.util, json, logging, sys, traceback
out, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
def emit(doc):
    with open(out, "w") as f:
        json.dump(doc, f, default=str)
def where(e):
    frames = traceback.extract_tb(e.__traceback__)
    return f"{'/'.join(frames[-1].filename.split('/')[-3:])}:{frames[-1].lineno}" if frames else "?"
def plain(v):
    if isinstance(v, enum.Enum):
        v = v.name
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)) and all(x is None or isinstance(x, (bool, int, float, str)) for x in v):
        return list(v)
    raise TypeError
def fields(obj):
    names = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else list(vars(obj))
    doc = {}
    for n in names:
        try:
            doc[n] = plain(getattr(obj, n))
        except Exception:
            pass
    return doc
for mod in ("miles", "megatron.bridge"):
    try:
        found = importlib.util.find_spec(mod) is not None
    except Exception:
        found = False
    if not found:
        emit({"status": "absent", "module": mod, "path": sys.path})
        sys.exit(0)
warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())
logging.getLogger().addHandler(Keep())
try:
    import miles.backends.megatron_utils  # loads miles' bridge plugin, as miles' trainer does
    from miles.backends.megatron_utils.model_provider import _apply_bridge_runtime_config
    from miles.utils.arguments import parse_args
    from megatron.bridge import AutoBridge
except BaseException as e:
    emit({"status": "import-error", "error": f"{type(e).__name__}: {e}", "where": where(e), "warnings": warnings})
    sys.exit(0)
dests = {}
real_add = argparse._ActionsContainer.add_argument
def add_argument(self, *a, **k):
    action = real_add(self, *a, **k)
    for opt in action.option_strings:
        dests[opt] = action.dest
    return action
argparse._ActionsContainer.add_argument = add_argument
class ParserError(Exception):
    pass
def error(self, message):
    raise ParserError(message)
argparse.ArgumentParser.error = error
sys.argv = [script, *argv]
try:
    args = parse_args()
except BaseException as e:
    emit({"status": "args-rejected", "message": f"{type(e).__name__}: {e}", "warnings": warnings})
    sys.exit(0)
doc = {"status": "built", "warnings": warnings, "dests": dests, "args": fields(args),
       "mode": getattr(args, "megatron_to_hf_mode", None)}
if doc["mode"] != "bridge":
    doc["status"] = "not-bridge"
    emit(doc)
    sys.exit(0)
try:
    bridge = AutoBridge.from_hf_pretrained(args.hf_checkpoint, trust_remote_code=True)
    cls = type(bridge._model_bridge)
    doc["bridge"] = {"name": cls.__name__, "module": cls.__module__}
    provider = bridge.to_megatron_provider(load_weights=False)
    doc["provider_class"] = type(provider).__name__
    _apply_bridge_runtime_config(provider, args)
except BaseException as e:
    doc.update(status="provider-error", error=f"{type(e).__name__}: {e}", where=where(e))
    emit(doc)
    sys.exit(0)
try:
    provider.finalize()
except BaseException as e:
    doc["finalize_error"] = {"type": type(e).__name__, "message": " ".join(str(e).split()), "where": where(e)}
doc["provider"] = fields(provider)
emit(doc)
"""


@dataclass
class Row:
    """One compared field: what was built and what the recipe claims, with where each came from."""
    field: str
    built: Any
    claimed: Any
    source: str  # where the recipe's value came from
    status: str = "ok"  # ok | differs | accepted
    why: str = ""  # an accepted difference's reason (recipe.toml)
    built_from: str = "config.json via the bridge"

    def line(self) -> str:
        text = f"{self.field}: built {self.built!r} ({self.built_from}), recipe {self.claimed!r} ({self.source})"
        return text + (f"; accepted: {self.why}" if self.why else "")

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _same(built: Any, claimed: Any) -> bool:
    if isinstance(built, bool) or isinstance(claimed, bool):
        return bool(built) == bool(claimed) if None not in (built, claimed) else built is claimed
    if isinstance(built, (int, float)) and isinstance(claimed, (int, float)):
        return float(built) == float(claimed)
    if isinstance(built, list) and isinstance(claimed, (list, tuple)):
        return list(built) == list(claimed)
    return built == claimed


def compare(result: dict, model_args: list[str], claims: list[tuple[str, Any, str]],
            accepted: dict[str, str], model_args_name: str = "model_args.txt") -> list[Row]:
    """Rows for every model flag of model_args and every family claim, in that order."""
    provider, args, dests = result.get("provider", {}), result.get("args", {}), result.get("dests", {})
    rows: list[Row] = []
    seen: set[str] = set()
    for flag in dict.fromkeys(w for w in model_args if w.startswith("--")):
        dest = dests.get(flag, flag[2:].replace("-", "_"))
        if dest in NOT_A_FIELD or dest not in args:
            continue
        field = FIELD_OF_DEST.get(dest, dest)
        negate = field.startswith("not ")
        field = field.removeprefix("not ")
        if field not in provider:
            continue
        claimed = (not args[dest]) if negate else args[dest]
        built_from = "copied from the argv by miles" if field in COPIED_FIELDS else "config.json via the bridge"
        rows.append(Row(field, provider[field], claimed, f"{model_args_name} {flag}", built_from=built_from))
        seen.add(field)
    for field, claimed, source in claims:
        if field in seen:
            continue
        rows.append(Row(field, provider.get(field, "(no such field)"), claimed, source))
        seen.add(field)
    for row in rows:
        if not _same(row.built, row.claimed):
            row.status, row.why = ("accepted", accepted[row.field]) if row.field in accepted else ("differs", "")
    return rows


def plugin_problems(warnings: list[str]) -> list[str]:
    """The warnings miles logs when its bridge plugin failed to load, restated."""
    found = [(fatal_reason(MILES_PATTERNS, text), text) for text in warnings]
    return [f"plugin: {hit[1]} (logged: {' '.join(text.split())})" for hit, text in found if hit]


def check_model(recipe, plan, environ: dict[str, str] | None = None) -> Check:
    from runner.model.family import family_name, load_family

    env = miles_args.job_process_env(plan, environ)
    interpreter = shutil.which(plan.entrypoint[0], path=env.get("PATH")) if plan.entrypoint else None
    if len(plan.entrypoint) < 2 or interpreter is None:
        return _skipped("the job's interpreter is not on PATH" if plan.entrypoint else "no trainer entry point",
                        plan, interpreter)
    hf = miles_args.flag_value(plan.argv, "--hf-checkpoint")
    if not hf or not (Path(hf) / "config.json").is_file():
        return _skipped(f"--hf-checkpoint {hf} has no config.json yet (the bridge reads it; see the inputs check)",
                        plan, interpreter)
    timeout = float(os.environ.get("RECIPE_MODEL_CHECK_TIMEOUT", DEFAULT_TIMEOUT_S))
    t0 = time.monotonic()
    result, tail = miles_args.run_parser(interpreter, plan.entrypoint[1], plan.argv, env, timeout, child=CHILD)
    seconds = round(time.monotonic() - t0, 1)
    status = result.get("status")
    data: dict[str, Any] = {"ran": True, "interpreter": interpreter, "seconds": seconds, "status": status,
                            "bridge": result.get("bridge"), "provider_class": result.get("provider_class"),
                            "warnings": result.get("warnings", [])}
    if status == "absent":
        return _skipped(f"{result.get('module')} is not importable by {interpreter} with PYTHONPATH="
                        f"{env.get('PYTHONPATH', '')!r} (not inside the pinned image)", plan, interpreter)
    if status == "not-bridge":
        return _done(na(NAME, f"--megatron-to-hf-mode is {result.get('mode')!r}, not bridge: the model is built "
                                 "from the command line the args check judged"), data)
    if status == "timeout":
        return _done(fail(NAME, f"building the provider did not finish within {timeout:g} s",
                             "RECIPE_MODEL_CHECK_TIMEOUT=<seconds> to wait longer, or --skip-preflight model"), data)
    if status in ("crashed", "import-error", "args-rejected", "provider-error"):
        why = {"crashed": f"the interpreter died (exit {result.get('exit_code')}): "
                          f"{(tail.splitlines() or ['no output'])[-1]}",
               "import-error": f"miles or megatron.bridge could not be imported: {result.get('error')} "
                               f"at {result.get('where')}",
               "args-rejected": f"miles' parser rejects the argv (the args check says why): {result.get('message')}",
               "provider-error": f"the bridge could not build the provider: {result.get('error')} "
                                 f"at {result.get('where')}"}[status]
        return _done(fail(NAME, why, "--skip-preflight model to proceed anyway"), data)

    cfg = _recipe_config(recipe)
    family = load_family(family_name(recipe.model_family, cfg))
    claims = family.provider_claims(cfg) if cfg and family and hasattr(family, "provider_claims") else []
    options = options_of(recipe)
    accepted = dict(options.accepted_model_differences)
    rows = compare(result, recipe.model_args(), claims, accepted, recipe.files["model_args"])
    data["rows"] = [r.as_dict() for r in rows]
    # each problem with its kind, so a reader (recipe doctor) need not parse the line
    kinds = [("plugin", line) for line in plugin_problems(result.get("warnings", []))]
    want = options.bridge
    got = (result.get("bridge") or {}).get("name")
    if want and got != want:
        kinds.append(("bridge", f"bridge: {got} ({(result.get('bridge') or {}).get('module')}) builds the model; "
                                f"the recipe expects {want} ([{recipe.framework}] bridge in recipe.toml)"))
    if result.get("finalize_error"):
        fe = result["finalize_error"]
        kinds.append(("finalize", f"finalize() failed ({fe['type']} at {fe['where']}): {fe['message']}"))
    kinds += [("field", r.line()) for r in rows if r.status == "differs"]
    problems = [line for _, line in kinds]
    data["lines"] = problems
    data["problems"] = [{"kind": k, "line": line} for k, line in kinds]
    notes = [r.line() for r in rows if r.status == "accepted"]
    if problems:
        check = fail(NAME, f"the model the stack builds differs from the recipe ({len(problems)} problem(s)):\n"
                        + "\n".join(problems),
                        f"`recipe doctor {recipe.name}` shows every field; fix config.json (the inputs check), "
                        "the image's miles plugin or bridge, or the recipe")
    else:
        check = ok(NAME, f"{got or 'the bridge'} builds {len(rows)} field(s) as the recipe states "
                            f"({WHERE}; {seconds:g} s)" + "".join(f"\nnote: {n}" for n in notes))
    return _done(check, data)


def _recipe_config(recipe) -> dict | None:
    """The recipe's own copy of config.json (hf_config.json): what it claims, whatever was downloaded."""
    from runner.model.family import load_hf_config, recipe_hf_config_path

    try:
        return load_hf_config(recipe_hf_config_path(recipe))
    except UsageError:  # no copy shipped (or not a JSON object): no family claims to compare
        return None


def _done(check: Check, data: dict) -> Check:
    check.data = data
    return check


def _skipped(why: str, plan, interpreter: str | None) -> Check:
    return miles_args.skipped(why, plan, interpreter, name=NAME)
