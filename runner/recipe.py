"""Recipe loading: `recipes/<name>/recipe.toml` and its frozen model args file, validated.

A Recipe is read-only data. Everything that decides *how* to launch (the argv, the job
environment) lives in the recipe's run script; see runner/launch/plan.py.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.paths import recipes_dir

RECIPE_FILE = "recipe.toml"
FILE_KEYS = ("model_args", "run_script", "expected_metrics", "manifest")


@dataclass(frozen=True)
class Cell:
    """One parallelism layout of a recipe."""

    name: str
    tp: int
    pp: int
    cp: int
    ep: int
    etp: int
    sp: bool
    max_tokens_per_gpu: int
    description: str = ""
    measured_logprob_abs_diff: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "cp": self.cp, "ep": self.ep, "etp": self.etp,
                "sp": self.sp, "max_tokens_per_gpu": self.max_tokens_per_gpu}

    def env(self) -> dict[str, str]:
        """The RECIPE_* variables a run script reads for this cell."""
        return {"RECIPE_TP": str(self.tp), "RECIPE_PP": str(self.pp), "RECIPE_CP": str(self.cp),
                "RECIPE_EP": str(self.ep), "RECIPE_ETP": str(self.etp), "RECIPE_SP": "1" if self.sp else "0",
                "RECIPE_MAX_TOKENS_PER_GPU": str(self.max_tokens_per_gpu)}


@dataclass(frozen=True)
class Recipe:
    name: str
    dir: Path
    data: dict[str, Any]
    cells: dict[str, Cell]
    default_cell: str
    files: dict[str, str] = field(default_factory=dict)

    # -- convenient views of the TOML --------------------------------------------------------
    @property
    def title(self) -> str:
        return self.data.get("title", "")

    @property
    def image(self) -> str:
        return self.data.get("image", {}).get("reference", "none")

    @property
    def hardware(self) -> dict[str, Any]:
        return self.data.get("hardware", {})

    @property
    def run_defaults(self) -> dict[str, Any]:
        return self.data.get("run", {})

    @property
    def pins(self) -> dict[str, Any]:
        d = self.data
        return {"image": d.get("image", {}), "commits": d.get("pins", {}), "model": d.get("model", {}),
                "data": d.get("data", {})}

    def path(self, key: str) -> Path:
        """Absolute path of one of the recipe's files (`model_args`, `run_script`, ...)."""
        return self.dir / self.files[key]

    def cell(self, name: str | None) -> Cell:
        name = name or self.default_cell
        if name not in self.cells:
            raise UsageError(f"unknown cell {name!r} for recipe {self.name}; "
                             f"valid cells: {', '.join(self.cells)}")
        return self.cells[name]

    def model_args(self) -> list[str]:
        return read_args_file(self.path("model_args"))


def read_args_file(path: Path) -> list[str]:
    """Flags from a one-flag-per-line file (same rules as the run scripts' bash reader)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read args file ({e.strerror})") from None
    words: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words.extend(line.split())
    return words


def args_to_dict(argv: list[str]) -> dict[str, str | bool]:
    """`--flag value` / `--switch` pairs to a dict (value True for a switch)."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[flag] = argv[i + 1]
            i += 2
        else:
            out[flag] = True
            i += 1
    return out


def list_recipes() -> list[str]:
    root = recipes_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / RECIPE_FILE).is_file())


def load_recipe(name: str) -> Recipe:
    names = list_recipes()
    if name not in names:
        raise UsageError(f"unknown recipe '{name}'; valid recipes: {', '.join(names) or '(none found)'}")
    return load_recipe_dir(recipes_dir() / name)


def _int_field(where: str, table: dict[str, Any], key: str, minimum: int = 1) -> int:
    v = table.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise UsageError(f"{where}: field '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def load_recipe_dir(path: Path) -> Recipe:
    f = path / RECIPE_FILE
    try:
        data = tomllib.loads(f.read_text())
    except OSError as e:
        raise UsageError(f"{f}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{f}: not valid TOML ({e})") from None

    name = data.get("name")
    if name != path.name:
        raise UsageError(f"{f}: field 'name' must equal the directory name '{path.name}', got {name!r}")
    files = data.get("files", {})
    for key in FILE_KEYS:
        if not isinstance(files.get(key), str):
            raise UsageError(f"{f}: [files] needs '{key}' (a path relative to the recipe directory)")

    cells_t = data.get("cells", {})
    # `default_cell = "<name>"` at top level; `[cells] default = "<name>"` also accepted.
    default = data.get("default_cell") or (cells_t.get("default") if isinstance(cells_t.get("default"), str) else None)
    cells: dict[str, Cell] = {}
    for cname, c in cells_t.items():
        if not isinstance(c, dict):
            continue
        where = f"{f} [cells.{cname}]"
        diff = c.get("measured_logprob_abs_diff")
        cells[cname] = Cell(
            name=cname,
            tp=_int_field(where, c, "tp"), pp=_int_field(where, c, "pp"), cp=_int_field(where, c, "cp"),
            ep=_int_field(where, c, "ep"), etp=_int_field(where, c, "etp"),
            sp=bool(c.get("sp", False)),
            max_tokens_per_gpu=_int_field(where, c, "max_tokens_per_gpu"),
            description=c.get("description", ""),
            measured_logprob_abs_diff=tuple(diff) if diff else None,
        )
    if not cells:
        raise UsageError(f"{f}: no [cells.<name>] tables; a recipe needs at least one parallelism cell")
    if default not in cells:
        raise UsageError(f"{f}: default_cell = {default!r} is not one of: {', '.join(cells)}")
    return Recipe(name=name, dir=path, data=data, cells=cells, default_cell=default, files=dict(files))
