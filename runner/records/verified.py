"""What is verified, where: each recipe's title, hardware, determinism tier and the run its blessed
reference came from (runner/gate/reference.py), for `recipe list` and the README's recipe table.

A recipe counts as verified only by a reference blessed from a run on its own hardware (`recipe bless`
refuses a run that failed its gate, so a reference is a run that passed). A reference blessed
elsewhere, or none, reads "never run on its hardware". The reference's header is a file the runner
did not write now: each field is type-checked here and escaped where it is printed.
"""

from __future__ import annotations

from typing import Any

from runner.gate.reference import reference_provenance
from runner.recipe import Recipe, list_recipes, load_recipe

NEVER = "never run on its hardware"


def hardware(recipe: Recipe) -> str:
    hw = recipe.hardware
    if hw.gpus_per_node == 0:
        return "CPU"
    return f"{hw.nodes} node(s) x {hw.gpus_per_node} {hw.gpu.replace('/', ' or ') or 'GPU'}"


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _gpu_name(prov: dict[str, Any]) -> str | None:
    host = prov.get("host")
    gpus = host.get("gpus") if isinstance(host, dict) else None
    first = gpus[0] if isinstance(gpus, list) and gpus else None
    name = first.get("name") if isinstance(first, dict) else None
    return name if isinstance(name, str) else None


def on_its_hardware(recipe: Recipe, prov: dict[str, Any]) -> bool:
    """The blessed run had the recipe's node and GPU counts and one of its GPU models (any machine
    runs a CPU recipe)."""
    hw = recipe.hardware
    if hw.gpus_per_node == 0:
        return True
    name = _gpu_name(prov) or ""
    models = [m for m in hw.gpu.split("/") if m]
    return (_int(prov.get("nodes")), _int(prov.get("gpus_per_node"))) == (hw.nodes, hw.gpus_per_node) \
        and (not models or any(m in name for m in models))


def ran_on(prov: dict[str, Any]) -> str:
    nodes, per = _int(prov.get("nodes")), _int(prov.get("gpus_per_node"))
    if not per:
        return "CPU"
    return f"{nodes or '?'} node(s) x {per} {_gpu_name(prov) or 'GPU'}"


def image_of(prov: dict[str, Any]) -> str:
    """The image by its digest (what pins it), shortened; 'host Python' for a recipe that pins none."""
    image = prov.get("image")
    if not isinstance(image, str) or not image:
        return "image unknown"
    if image == "none":
        return "host Python"
    _, at, digest = image.partition("@")
    return digest[:19] if at else image


def verification(recipe: Recipe) -> dict[str, Any] | None:
    """{"run_id", "at", "hardware", "image"} of the reference blessed on the recipe's hardware, else None."""
    prov = reference_provenance(recipe.path("expected_metrics"))
    if prov is None or not on_its_hardware(recipe, prov):
        return None
    at = prov.get("ended_at") or prov.get("blessed_at")
    run_id = prov.get("run_id")
    return {"run_id": run_id if isinstance(run_id, str) else None, "at": at[:10] if isinstance(at, str) else "?",
            "hardware": ran_on(prov), "image": image_of(prov)}


def status_line(v: dict[str, Any] | None) -> str:
    return NEVER if v is None else f"{v['at']} on {v['hardware']}, {v['image']}"


def recipe_rows() -> list[dict[str, Any]]:
    """One row per recipe of the bundle: what `recipe list` prints and the README's table holds."""
    rows = []
    for name in list_recipes():
        r = load_recipe(name)
        v = verification(r)
        rows.append({"name": name, "title": r.title, "hardware": hardware(r), "determinism": r.determinism.tier,
                     "verified": v, "status": status_line(v)})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README's recipe table (tests/test_readme_commands.py holds the README to it)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| recipe | title | hardware | determinism | last verified |", "|---|---|---|---|---|"]
    lines += [f"| `{r['name']}` | {cell(r['title'])} | {cell(r['hardware'])} | {r['determinism']} | "
              f"{cell(r['status'])} |" for r in rows]
    return "\n".join(lines) + "\n"
