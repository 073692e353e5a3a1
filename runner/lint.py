"""`recipe lint`: catch a recipe's silent mistakes from its files alone, before GPU hours are spent.

Four groups of rules, each reported as applicable or not:
- provenance: the shipped config.json is the pinned revision's (sha256 against the manifest);
- model: every frozen model flag agrees with the model's config.json: the model family's rules
  (runner/model/family.py), restated by the framework adapter for what reaches the model;
- recipe: the full train argv avoids the framework's known traps (runner/frameworks/);
- layout: each cell obeys the divisibility rules and fits in GPU memory (the family's memory model).
A recipe whose family has no module is told so ("no model rules for <family>"), never skipped
silently. Errors make `recipe lint` exit 1 (and `recipe run` refuse); warnings and notes do not.

The argv judged is the launch's own when the caller passes it (`plan=` or `argv=`: what the run
launches); otherwise the cell's plan is rendered here (runner/plan/render.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner import console
from runner.errors import RecipeError, UsageError
from runner.frameworks import framework_of
from runner.frameworks.base import Framework
from runner.inputs.layout import inputs_root, model_dir
from runner.model.family import (
    family_architecture,
    family_name,
    has_memory_model,
    load_family,
    load_hf_config,
    no_rules,
)
from runner.model.finding import Finding
from runner.model.memory import capacity_bytes
from runner.model.parallel import Architecture, layout_errors, layout_warnings
from runner.plan.render import render_plan
from runner.recipe import Recipe, load_recipe, read_args_file

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


def sentence(f: Finding) -> str:
    """A finding as the line a person reads, wherever it is printed (lint's table, run's preflight)."""
    return f"{f.rule}: {f.message}"


def fix(recipe: str, f: Finding, gpus: int) -> str:
    """What to do about an error of one launch: a layout error is about the launch's GPUs, which
    `recipe lint` (every cell at its own size) does not see; `recipe plan --gpus` lists what fits."""
    if f.rule.startswith("layout."):
        return f"pick a cell or --gpus-per-node that fits: recipe plan {recipe} --gpus {gpus}"
    return f"recipe lint {recipe}"


def launch_lint(opts: Any, argv: list[str]) -> LintReport:
    """The findings of one launch (a runner.plan.options.RunOptions and the argv its plan starts): its
    cell at its nodes and GPUs. `recipe run` refuses on their errors and `recipe plan` prints them."""
    return lint_recipe(opts.recipe, cell=opts.cell.name, nodes=opts.nodes, gpus_per_node=opts.gpus_per_node,
                       argv=argv)


def format_report(r: LintReport) -> str:
    rows = [(f.severity, sentence(f)) for f in   # the sentences run and plan print, in a column
            sorted(r.findings, key=lambda f: ("error", "warning", "note").index(f.severity))]
    rows += [("n/a", f"{group}: not applicable: {why}") for group, why in r.skipped.items()]
    lines = [console.table(("severity", "finding"), rows, no_wrap=("severity",))] if rows else []
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


# -- layouts and memory -------------------------------------------------------------------------
def layout_findings(recipe: Recipe, cells: list[str], arch: Architecture, world: int, argv: list[str] | None,
                    hf: dict[str, Any] | None, family: Any = None, fw: Framework | None = None) -> list[Finding]:
    out: list[Finding] = []
    shape = None
    if family is None:
        out.append(Finding("note", "layout.memory", "memory not estimated: no model family module for this "
                           "model (see the model group)"))
    elif not has_memory_model(family):
        out.append(Finding("note", "layout.memory", f"memory not estimated: model family {family.NAME} "
                           "provides no memory model"))
    elif family is not None and hf is not None and argv is not None:
        try:
            shape = family.shape(hf)
        except ValueError as e:
            out.append(Finding("warning", "layout.memory", f"memory not estimated: {e}"))
    hw = recipe.hardware
    capacity = capacity_bytes(hw.gpu, hw.min_gpu_memory_gib)
    fw = fw or framework_of(recipe)
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
        m = family.estimate_memory(shape, lay, world, fw.memory_settings(argv, cell.max_tokens_per_gpu), capacity)
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
    shipped = recipe.path("hf_config")
    if shipped.is_file():
        return shipped
    in_inputs = model_dir(recipe, inputs_root(recipe)) / "config.json"
    return in_inputs if in_inputs.is_file() else None


def lint_recipe(recipe: Recipe | str, args_file: str | Path | None = None, hf_config: str | Path | None = None,
                cell: str | None = None, *, nodes: int | None = None, gpus_per_node: int | None = None,
                argv: list[str] | None = None, plan: Any = None) -> LintReport:
    """Lint `recipe`; nodes/gpus_per_node (default: the recipe's hardware) size the layout checks.

    plan (a runner.plan.spec.Plan) or argv: the train argv the launch runs; lint then judges
    exactly that instead of rendering the cell's plan again.
    """
    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    if cell is not None:
        recipe.cell(cell)  # unknown cell: a usage error naming the valid ones
    if plan is not None and argv is None:
        argv = list(plan.argv)
    fw = framework_of(recipe)
    args_path = Path(args_file) if args_file else recipe.path("model_args")
    cfg_path = Path(hf_config) if hf_config else default_hf_config(recipe)
    if hf_config and not Path(hf_config).is_file():
        raise UsageError(f"--hf-config {hf_config}: no such file")
    report = LintReport(recipe=recipe.name, cell=cell, args_file=str(args_path),
                        hf_config=str(cfg_path) if cfg_path else None)

    try:
        model_args = read_args_file(args_path)
    except UsageError:
        if args_file or fw.PREFLIGHT and "args" in fw.PREFLIGHT:
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

    # the model family's rules: model args vs config.json
    flags = fw.model_args_are_flags(model_args)
    fam_name = family_name(recipe.model_family, cfg)
    family = load_family(fam_name) if cfg is not None else None
    if not flags:
        report.skipped["model"] = f"framework {fw.NAME!r}: the model args are not trainer model flags"
    elif cfg is None:
        report.skipped["model"] = "no config.json to compare with"
    elif family is None:
        report.skipped["model"] = no_rules(fam_name)
    else:
        if argv is None:
            argv = _render(recipe, cell, nodes, gpus_per_node, report)
        report.findings += fw.adjust_model_findings(family.model_findings(model_args, cfg), argv, cfg)
        report.checked.append("model")

    # framework traps and layout rules need the framework's own model flags
    if not flags:
        why = f"framework {fw.NAME!r}: no trainer model flags to size layouts from"
        report.skipped["recipe"] = why
        report.skipped["layout"] = why
        return report
    try:
        arch: Architecture | None = family_architecture(family, model_args, cfg)
    except ValueError as e:  # e.g. no --num-layers: the model rules already named it
        arch = None
        report.findings.append(Finding("error", "layout.model_args", f"{args_path}: {e}; layouts not checked"))
    if argv is None and "recipe" not in report.skipped:
        argv = _render(recipe, cell, nodes, gpus_per_node, report)
    if argv is not None:
        moe = arch.num_experts > 0 if arch else "--num-experts" in model_args
        report.findings += fw.lint_traps(argv, model_args, cfg, moe=moe)
        report.checked.append("recipe")
    if arch is None:
        return report
    hw = recipe.hardware
    world = (nodes or hw.nodes) * (gpus_per_node if gpus_per_node is not None else hw.gpus_per_node)
    if world == 0:
        report.skipped["layout"] = "the recipe runs on no GPUs"
        return report
    report.findings += layout_findings(recipe, [cell] if cell else list(recipe.cells), arch, world, argv,
                                       cfg, family, fw)
    report.checked.append("layout")
    return report


def _render(recipe: Recipe, cell: str | None, nodes: int | None, gpus_per_node: int | None,
            report: LintReport) -> list[str] | None:
    """The cell's rendered plan; None (and the recipe group skipped, saying why) if it cannot be rendered."""
    try:
        return render_plan(recipe, cell, nodes=nodes, gpus_per_node=gpus_per_node).argv
    except RecipeError as e:
        report.skipped["recipe"] = f"the plan could not be rendered: {e.message}"
        return None
