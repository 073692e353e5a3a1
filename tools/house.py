"""The shape of the runner: its layers, the imports between them, and what names a model family.

    python3 tools/house.py            # lines per package, arrows back up, reach-throughs, family lines

Layers, low to high: a module may import from its own layer and from those below it, never from
one above (every import counts: top-level, inside a function, under TYPE_CHECKING). tests/test_house.py
holds the runner to it; docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (layer, module prefixes). The longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("runner", "runner.errors", "runner.paths", "runner.atomicfile", "runner.secrets",
              "runner.gitrefs", "runner.console", "runner.hostinfo", "runner.checks", "runner.layout")),
    ("recipe", ("runner.recipe",)),
    ("image", ("runner.image",)),
    ("inputs", ("runner.inputs",)),
    ("model", ("runner.model",)),
    ("gate", ("runner.gate",)),
    ("records", ("runner.records",)),
    ("plan", ("runner.plan",)),
    ("frameworks", ("runner.frameworks",)),
    ("render", ("runner.plan.render",)),  # asks the registry for the recipe's adapter
    ("analysis", ("runner.lint", "runner.planner", "runner.doctor")),
    ("launch", ("runner.launch",)),
    ("commands", ("runner.commands", "runner.cli")),
]
FAMILY_WORDS = re.compile(r"nemotron|mamba|hybrid[_ ]override|hybrid pattern", re.I)
FRAMEWORK_WORDS = re.compile(r"nemotron|miles|mamba|sglang|megatron", re.I)


@dataclass(frozen=True)
class Import:
    src: str  # importing module
    dst: str  # imported module (a name imported from a module resolves to that module)
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, package: str = "runner") -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def imports(root: Path, package: str = "runner") -> list[Import]:
    mods = modules(root, package)
    out = []
    for name, path in mods.items():
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Import):
                out += [Import(name, a.name, n.lineno) for a in n.names if a.name.split(".")[0] == package]
            elif isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == package:
                for a in n.names:  # `from runner import hostinfo` imports a module; `from runner.x import f`, x
                    sub = f"{n.module}.{a.name}"
                    out.append(Import(name, sub if sub in mods else n.module, n.lineno))
    return out


def layer_of(module: str, layers=LAYERS) -> int | None:
    best, at = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, at = len(p), i
    return at


def climbing(root: Path, layers=LAYERS, package: str = "runner") -> list[str]:
    """Every import from a module into a layer above its own, as 'path:line: src -> dst'."""
    out = []
    for imp in imports(root, package):
        a, b = layer_of(imp.src, layers), layer_of(imp.dst, layers)
        if a is not None and b is not None and b > a:
            out.append(f"{imp.src}:{imp.line}: {imp.src} ({layers[a][0]}) -> {imp.dst} ({layers[b][0]})")
    return out


def unplaced(root: Path, layers=LAYERS, package: str = "runner") -> list[str]:
    return [m for m in modules(root, package) if layer_of(m, layers) is None]


def _top_names(path: Path) -> tuple[set[str], set[str]]:
    """Names a module defines, and names it only imports, at module level (and under if/try)."""
    defined, imported = set(), set()
    tree = ast.parse(path.read_text())
    stack = list(tree.body)
    while stack:
        n = stack.pop()
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(n.name)
        elif isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                defined |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
        elif isinstance(n, ast.Import | ast.ImportFrom):
            imported |= {a.asname or a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.If | ast.Try):
            stack += [*n.body, *getattr(n, "orelse", []), *getattr(n, "finalbody", []),
                      *(s for h in getattr(n, "handlers", []) for s in h.body)]
    return defined, imported


def reached_through(root: Path, files: list[Path], package: str = "runner") -> list[str]:
    """`alias.name` where alias is an imported runner module and name is only imported into it:
    the caller depends on where that module happens to import from. Import the name from its home."""
    mods = modules(root, package)
    names = {m: _top_names(p) for m, p in mods.items()}
    subs: dict[str, set[str]] = {}  # a package's submodules are its own names too
    for m in mods:
        if "." in m:
            parent, leaf = m.rsplit(".", 1)
            subs.setdefault(parent, set()).add(leaf)
    out = []
    for f in files:
        tree = ast.parse(f.read_text())
        alias = {}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and f"{n.module}.{n.names[0].name}" in mods:
                alias |= {a.asname or a.name: f"{n.module}.{a.name}" for a in n.names if f"{n.module}.{a.name}" in mods}
            elif isinstance(n, ast.Import):
                alias |= {a.asname: a.name for a in n.names if a.asname and a.name in mods}
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in alias:
                mod = alias[n.value.id]
                defined, imported = names[mod]
                if n.attr in imported and n.attr not in defined | subs.get(mod, set()):
                    out.append(f"{f.relative_to(root)}:{n.lineno}: {n.value.id}.{n.attr} is imported into {mod}, "
                               "not defined there")
    return out


def word_lines(root: Path, words: re.Pattern, skip: set[Path] = frozenset(), under: str = "runner") -> list[str]:
    return [f"{p.relative_to(root)}:{i}: {line.strip()}"
            for p in sorted((root / under).rglob("*.py")) if p not in skip
            for i, line in enumerate(p.read_text().splitlines(), 1) if words.search(line)]


def package_lines(root: Path, package: str = "runner") -> dict[str, int]:
    out: dict[str, int] = {}
    for m, p in modules(root, package).items():
        top = m.split(".")[1] if "." in m else package
        key = top if (root / package / top).is_dir() else "(modules)"
        out[key] = out.get(key, 0) + len(p.read_text().splitlines())
    return out


def main() -> int:
    lines = package_lines(ROOT)
    print(f"{'package':<14} {'lines':>6}")
    for k, v in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"{k:<14} {v:>6}")
    print(f"{'total':<14} {sum(lines.values()):>6}\n")
    up = climbing(ROOT)
    print(f"imports climbing to a higher layer: {len(up)}")
    print("".join(f"  {x}\n" for x in up), end="")
    files = sorted((ROOT / "runner").rglob("*.py"))
    rt = reached_through(ROOT, files)
    print(f"names reached through a module alias: {len(rt)}")
    print("".join(f"  {x}\n" for x in rt), end="")
    lost = unplaced(ROOT)
    print(f"modules in no layer: {lost or 'none'}")
    fw = [x for x in word_lines(ROOT, FRAMEWORK_WORDS) if not x.startswith("runner/frameworks/")]
    fam = word_lines(ROOT, FAMILY_WORDS, {ROOT / "runner" / "frameworks" / "miles_log.py"})
    print(f"lines naming nemotron/miles/mamba/sglang/megatron outside runner/frameworks/: {len(fw)} "
          f"in {len({x.split(':')[0] for x in fw})} files")
    print(f"lines naming a model family in runner/ (miles' quoted log lines aside): {len(fam)}")
    return 1 if up or rt or lost or fam else 0


if __name__ == "__main__":
    sys.exit(main())
