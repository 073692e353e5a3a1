"""`recipe lint`: catch a recipe's silent mistakes from its files alone, before GPU hours are spent.

Four groups of rules, each reported as applicable or not:
- provenance: the shipped config.json is the pinned revision's (sha256 against the manifest);
- model: every frozen Megatron model flag agrees with the model's config.json (runner/model/rules.py);
- recipe: the full train argv avoids known traps of miles (R3, pause mode, ref model, KL);
- layout: each cell obeys Megatron's divisibility rules and fits in GPU memory (runner/model/memory.py).
Errors make `recipe lint` exit 1 (and `recipe run` refuse); warnings and notes do not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RecipeError, UsageError
from runner.inputs.layout import inputs_root, model_dir
from runner.launch.train_argv import train_argv
from runner.model.memory import GIB, GPU_MEMORY_BYTES, MemorySettings, estimate_memory, load_hf_config
from runner.model.parallel import Architecture, layout_errors, layout_warnings
from runner.model.rules import Finding, is_megatron_args, is_nemotron_h, model_findings
from runner.model.shape import ModelShape
from runner.recipe import Recipe, args_to_dict, load_recipe, read_args_file

__all__ = ["Finding", "LintReport", "lint_recipe", "format_report"]


@dataclass
class LintReport:
    recipe: str
    cell: str | None
    args_file: str
    hf_config: str | None
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # rule group -> why it does not apply

    def _of(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self._of("error")

    @property
    def warnings(self) -> list[Finding]:
        return self._of("warning")

    @property
    def notes(self) -> list[Finding]:
        return self._of("note")

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "cell": self.cell, "args_file": self.args_file,
                "hf_config": self.hf_config, "ok": self.ok,
                "counts": {"errors": len(self.errors), "warnings": len(self.warnings), "notes": len(self.notes)},
                "checked": self.checked, "not_applicable": self.skipped,
                "findings": [asdict(f) for f in self.findings]}


def format_report(r: LintReport) -> str:
    lines = [f"{f.severity:<7} {f.rule:<22} {f.message}" for f in
             sorted(r.findings, key=lambda f: ("error", "warning", "note").index(f.severity))]
    lines += [f"n/a     {group:<22} not applicable: {why}" for group, why in r.skipped.items()]
    lines.append(f"lint {r.recipe}: {len(r.errors)} error(s), {len(r.warnings)} warning(s), {len(r.notes)} "
                 f"note(s); checked: {', '.join(r.checked) or 'nothing'}; model args {r.args_file}; "
                 f"config {r.hf_config or '(none)'}")
    return "\n".join(lines)


# -- provenance ---------------------------------------------------------------------------------
_MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def _manifest_sha(manifest: Path, rel: str) -> str | None:
    for line in manifest.read_text().splitlines():
        m = _MANIFEST_LINE.match(line)
        if m and m.group(2) == rel:
            return m.group(1).lower()
    return None


def provenance_findings(recipe: Recipe, cfg_path: Path, shipped: bool) -> tuple[list[Finding], str | None]:
    """(findings, reason the check cannot run)."""
    manifest = recipe.path("manifest") if "manifest" in recipe.files else None
    rel = f"{recipe.model.dir}/config.json"
    if manifest is None or not manifest.is_file():
        return [], f"no inputs manifest ({manifest}) to hold the pinned config.json's sha256"
    pinned = _manifest_sha(manifest, rel)
    if pinned is None:
        return [], f"{manifest.name} lists no {rel}"
    actual = hashlib.sha256(cfg_path.read_bytes()).hexdigest()
    if actual == pinned:
        return [], None
    if shipped:
        return [Finding("error", "provenance.hf_config", f"{cfg_path.name} sha256 {actual[:12]}... is not the "
                        f"pinned config.json ({rel} in {manifest.name}: {pinned[:12]}...): lint would compare the "
                        f"model args against the wrong file", field="config.json", expected=pinned,
                        actual=actual)], None
    return [Finding("note", "provenance.hf_config", f"--hf-config {cfg_path} is not the pinned config.json "
                    f"(sha256 {actual[:12]}... vs {pinned[:12]}...); comparing against it as asked",
                    field="config.json", expected=pinned, actual=actual)], None


# -- recipe-level rules (miles) -----------------------------------------------------------------
def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def recipe_findings(argv: list[str], moe: bool) -> list[Finding]:
    a = args_to_dict(argv)
    out: list[Finding] = []
    r3 = "--use-rollout-routing-replay" in a
    if moe and not r3:
        out.append(Finding("error", "recipe.r3", "MoE model without --use-rollout-routing-replay: training "
                           "re-routes every token on its own, so train and rollout log-probs drift (~0.28 "
                           "upstream without R3, 0.013-0.014 with it)", flag="--use-rollout-routing-replay"))
    if r3:
        mode = a.get("--pause-generation-mode")
        in_flight = "--partial-rollout" in a or "--fully-async" in a or "--colocate" not in a
        if mode == "retract":
            out.append(Finding("warning", "recipe.pause_mode", "R3 with --pause-generation-mode retract: "
                               "retracted requests are recomputed after the weight update and can pair log-probs "
                               "with recomputed routes; use abort or in_place",
                               flag="--pause-generation-mode", expected="abort|in_place", actual="retract"))
        elif mode is None:
            sev = "warning" if in_flight else "note"
            why = ("requests can be in flight at a weight update here" if in_flight else
                   "harmless while rollout is colocated and synchronous (nothing in flight at a weight update)")
            out.append(Finding(sev, "recipe.pause_mode", f"R3 with the default --pause-generation-mode "
                               f"(retract in miles v0.1.0): {why}; set abort or in_place explicitly",
                               flag="--pause-generation-mode", expected="abort|in_place", actual=None))
    if a.get("--megatron-to-hf-mode") == "bridge":
        hf, ref = a.get("--hf-checkpoint"), a.get("--ref-load")
        if isinstance(ref, str) and isinstance(hf, str) and Path(hf) != Path(ref):
            out.append(Finding("warning", "recipe.ref_load", f"bridge mode with --hf-checkpoint {hf} but "
                               f"--ref-load {ref}: the KL reference is not the policy's starting point",
                               flag="--ref-load", expected=hf, actual=ref))
    if "--use-kl-loss" in a and _num(a.get("--kl-loss-coef", 0.0)) == 0.0:
        out.append(Finding("note", "recipe.kl_zero", "--use-kl-loss with --kl-loss-coef 0: the KL term adds "
                           "nothing, but the reference model is still loaded and run every step",
                           flag="--kl-loss-coef", actual=a.get("--kl-loss-coef", "0 (default)")))
    if "--use-miles-router" in a:
        # miles 78527b91: miles/ray/rollout/router_manager.py starts MilesRouter for this flag, else the
        # sgl-router; scripts/run_nemotron_3_nano.py there passes only --use-rollout-routing-replay.
        out.append(Finding("note", "recipe.miles_router", "--use-miles-router puts miles' Python HTTP router "
                           "(MilesRouter) in front of the SGLang engines instead of the Rust sgl-router; it is "
                           "not routing replay (that is --use-rollout-routing-replay), and upstream's own "
                           "launcher at miles v0.1.0 no longer passes it", flag="--use-miles-router"))
    if "--use-rollout-logprobs" in a:
        out.append(Finding("warning", "recipe.rollout_logprobs", "--use-rollout-logprobs: training uses "
                           "SGLang's log-probs, so train/train_rollout_logprob_abs_diff is 0 by construction and "
                           "the train/rollout acceptance check measures nothing", flag="--use-rollout-logprobs"))
    return out


# -- layouts and memory -------------------------------------------------------------------------
def layout_findings(recipe: Recipe, cells: list[str], arch: Architecture, world: int, argv: list[str] | None,
                    hf: dict[str, Any] | None) -> list[Finding]:
    out: list[Finding] = []
    shape = None
    if hf is not None and argv is not None:
        try:
            shape = ModelShape.from_hf_config(hf)
        except ValueError as e:
            out.append(Finding("warning", "layout.memory", f"memory not estimated: {e}"))
    hw = recipe.hardware
    capacity = GPU_MEMORY_BYTES.get(hw.gpu) or int(float(hw.min_gpu_memory_gib or 80) * GIB)
    for name in cells:
        cell = recipe.cells[name]
        lay = cell.layout
        where = f"cell {name} ({lay.label()}) on {world} GPUs"
        errs = layout_errors(arch, lay, world)
        out += [Finding("error", "layout.divisibility", f"{where}: {e}") for e in errs]
        out += [Finding("warning", "layout.megatron_warning", f"{where}: {w}") for w in
                layout_warnings(arch, lay, world)]
        if errs or shape is None or argv is None:
            continue
        m = estimate_memory(shape, lay, world, MemorySettings.from_argv(argv, cell.max_tokens_per_gpu), capacity)
        detail = (f"predicted peak {m.peak:.1f} GiB per GPU of {m.capacity:.1f} (weights {m.weights:.1f}, grads "
                  f"{m.grads:.1f}, optimizer {m.optimizer:.1f}, activations {m.activations:.1f}, rollout phase "
                  f"{m.rollout_phase:.1f}; `recipe plan {recipe.name} --gpus {world}` for the model)")
        if not m.fits:
            out.append(Finding("error", "layout.memory", f"{where}: out of memory: {detail}"))
        elif m.tight:
            out.append(Finding("warning", "layout.memory", f"{where}: within 5% of the card: {detail}"))
    return out


# -- the entry point ----------------------------------------------------------------------------
def default_hf_config(recipe: Recipe) -> Path | None:
    """The recipe's shipped hf_config.json, else config.json in its inputs (a recipe may ship those)."""
    shipped = recipe.dir / recipe.files.get("hf_config", "hf_config.json")
    if shipped.is_file():
        return shipped
    in_inputs = model_dir(recipe, inputs_root(recipe)) / "config.json"
    return in_inputs if in_inputs.is_file() else None


def lint_recipe(recipe: Recipe | str, args_file: str | Path | None = None, hf_config: str | Path | None = None,
                cell: str | None = None, *, nodes: int | None = None,
                gpus_per_node: int | None = None, argv: list[str] | None = None) -> LintReport:
    """Lint `recipe`; nodes/gpus_per_node (default: the recipe's hardware) size the layout checks.
    argv: the trainer argv of the launch being run (its plan's), judged as is; None renders it."""
    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    if cell is not None:
        recipe.cell(cell)  # unknown cell: a usage error naming the valid ones
    framework = recipe.framework
    args_path = Path(args_file) if args_file else recipe.path("model_args")
    cfg_path = Path(hf_config) if hf_config else default_hf_config(recipe)
    if hf_config and not Path(hf_config).is_file():
        raise UsageError(f"--hf-config {hf_config}: no such file")
    report = LintReport(recipe=recipe.name, cell=cell, args_file=str(args_path),
                        hf_config=str(cfg_path) if cfg_path else None)

    try:
        model_args = read_args_file(args_path)
    except UsageError:
        if args_file or framework == "miles":
            raise
        model_args = []
    cfg = load_hf_config(cfg_path) if cfg_path else None

    # provenance
    if cfg_path is None:
        report.skipped["provenance"] = "the recipe ships no hf_config.json"
    else:
        found, why = provenance_findings(recipe, cfg_path, shipped=hf_config is None)
        report.findings += found
        if why:
            report.skipped["provenance"] = why
        else:
            report.checked.append("provenance")

    # model args vs config.json
    megatron = is_megatron_args(model_args)
    nemotron = cfg is not None and is_nemotron_h(cfg)
    if megatron and nemotron:
        report.findings += model_findings(model_args, cfg)
        report.checked.append("model")
    else:
        report.skipped["model"] = ("model args are not Megatron flags" if not megatron else
                                   "no NemotronH config.json to compare with")

    # recipe-level and layout rules need miles and a Megatron model
    if framework != "miles" or not megatron:
        why = f"framework {framework!r}, not miles" if framework != "miles" else "model args are not Megatron flags"
        report.skipped["recipe"] = why
        report.skipped["layout"] = why
        return report
    try:
        arch: Architecture | None = Architecture.from_model_args(model_args, cfg if nemotron else None)
    except ValueError as e:  # e.g. no --num-layers: the model rules already named it
        arch = None
        report.findings.append(Finding("error", "layout.model_args", f"{args_path}: {e}; layouts not checked"))
    try:
        argv = train_argv(recipe, cell, nodes, gpus_per_node) if argv is None else argv
    except RecipeError as e:
        report.skipped["recipe"] = f"the run script's dry run failed: {e.message}"
    if argv is not None:
        moe = arch.num_experts > 0 if arch else "--num-experts" in model_args
        report.findings += recipe_findings(argv, moe=moe)
        report.checked.append("recipe")
    if arch is None:
        return report
    hw = recipe.hardware
    world = (nodes or hw.nodes) * (gpus_per_node if gpus_per_node is not None else hw.gpus_per_node)
    if world == 0:
        report.skipped["layout"] = "the recipe runs on no GPUs"
        return report
    report.findings += layout_findings(recipe, [cell] if cell else list(recipe.cells), arch, world, argv,
                                       cfg if nemotron else None)
    report.checked.append("layout")
    return report
