"""Recipe loading: `recipes/<name>/recipe.toml` and its frozen model args file, validated.

A Recipe is read-only typed data: every table of recipe.toml becomes a frozen dataclass, checked
once at load. A missing table, a table that is a scalar or a list, a field of the wrong type: exit 2
with one line naming the file and the field. Nothing outside this module reads the raw TOML.
Everything that decides *how* to launch (the argv, the job environment) lives in the recipe's run
script; see runner/plan/dryrun.py.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import shellhelpers
from runner.errors import RecipeError, UsageError
from runner.layout import Layout
from runner.paths import recipes_dir

RECIPE_FILE = "recipe.toml"
FILE_KEYS = ("model_args", "run_script", "expected_metrics", "manifest")


# ---- the tables ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One parallelism layout of a recipe."""

    name: str
    layout: Layout
    max_tokens_per_gpu: int
    description: str = ""
    measured_logprob_abs_diff: tuple[float, float] | None = None

    # The layout's numbers, as the rest of the code (and `recipe show --format json`) names them.
    tp = property(lambda self: self.layout.tp)
    pp = property(lambda self: self.layout.pp)
    cp = property(lambda self: self.layout.cp)
    ep = property(lambda self: self.layout.ep)
    etp = property(lambda self: self.layout.etp)
    sp = property(lambda self: self.layout.sp)

    def as_dict(self) -> dict[str, Any]:
        lay = self.layout
        return {"tp": lay.tp, "pp": lay.pp, "cp": lay.cp, "ep": lay.ep, "etp": lay.etp, "sp": lay.sp,
                "max_tokens_per_gpu": self.max_tokens_per_gpu}

    def env(self) -> dict[str, str]:
        """The RECIPE_* variables a run script reads for this cell."""
        lay = self.layout
        return {"RECIPE_TP": str(lay.tp), "RECIPE_PP": str(lay.pp), "RECIPE_CP": str(lay.cp),
                "RECIPE_EP": str(lay.ep), "RECIPE_ETP": str(lay.etp), "RECIPE_SP": "1" if lay.sp else "0",
                "RECIPE_MAX_TOKENS_PER_GPU": str(self.max_tokens_per_gpu)}


@dataclass(frozen=True)
class ImagePin:
    reference: str  # NAME[:TAG]@sha256:DIGEST, or "none" (the recipe runs on the host's Python)
    cuda: str = ""
    min_driver: int | None = None  # the host driver the image's CUDA needs (R<n>)
    python: str = ""
    lock: str | None = None  # the image lock, relative to the bundle root (default docker/image.lock)


@dataclass(frozen=True)
class Source:
    """A Hugging Face repo at a revision: the model, or the data set."""

    repo: str = ""
    revision: str = ""
    dir: str = ""  # under the inputs root
    repo_type: str = "model"
    file: str = ""  # the data set file (data only)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class Hardware:
    nodes: int
    gpus_per_node: int  # 0: a CPU recipe
    gpu: str = ""
    min_gpu_memory_gib: float | None = None
    min_shm_gib: float = 0
    min_free_disk_gib: float = 0


@dataclass(frozen=True)
class RunDefaults:
    num_rollout: int
    seed: int
    rollout_seed: int
    deterministic: bool = False


@dataclass(frozen=True)
class Determinism:
    tier: str = "unspecified"  # bitwise | statistical
    nondeterministic_metrics: tuple[str, ...] = ("perf/*",)


@dataclass(frozen=True)
class Recipe:
    name: str
    dir: Path
    title: str
    framework: str
    image_pin: ImagePin
    commits: dict[str, str]
    model: Source
    dataset: Source  # [data]: the data set
    inputs_root: str | None  # [inputs] root: a recipe that ships its inputs (relative to its directory)
    hardware: Hardware
    run_defaults: RunDefaults
    determinism: Determinism
    cells: dict[str, Cell]
    default_cell: str
    files: dict[str, str] = field(default_factory=dict)
    host_extras: tuple[str, ...] = ()  # pip extras of this bundle the job's interpreter needs (CPU recipes)
    model_family: str = ""  # [model] family: the family module under recipes/lib/families (default: model_type)
    record_packages: tuple[str, ...] = ()  # distributions whose versions run.json records (asked of the job)
    # the table named after the framework ([miles] ...): read by that framework's adapter only
    framework_options: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return self.image_pin.reference

    @property
    def pins(self) -> dict[str, Any]:
        return {"image": dict(self.image_pin.__dict__), "commits": dict(self.commits), "model": self.model.as_dict(),
                "data": self.dataset.as_dict()}

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


# ---- files --------------------------------------------------------------------------------------

def read_text(path: Path, what: str) -> str:
    """A file's text, or a one-line usage error naming it (unreadable, or not UTF-8)."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UsageError(f"{path}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: {what} is not UTF-8 text (byte {e.start})") from None


def read_args_file(path: Path) -> list[str]:
    """Flags from a one-flag-per-line file, read by the run scripts' own bash reader
    (recipe_read_args_file in recipes/lib/launch.sh): one owner of the format, so what lint and the
    checks judge is what the run script passes. A refusal is a usage error with the reader's line."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise UsageError(f"{path}: cannot read args file ({e.strerror})") from None
    return list(_bash_read_args(path.resolve(), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))


# Prints each flag NUL-terminated; none for a file of comments alone.
_ARGS_READER = ('source "$1" && recipe_read_args_file "$2" flags && '
                '{ ((${#flags[@]} == 0)) || printf "%s\\0" "${flags[@]}"; }')


@functools.lru_cache(maxsize=64)
def _bash_read_args(path: Path, *stamp: int) -> tuple[str, ...]:  # stamp: the file as it was read
    read_text(path, "args file")  # readable, and UTF-8 text throughout (comments too): a usage error naming it
    try:
        p = shellhelpers.call(_ARGS_READER, str(path))
    except OSError as e:
        raise RecipeError(f"cannot run bash to read {path} ({e.strerror}); the run scripts need bash too") from None
    if p.returncode != 0:
        why = p.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(why[-1].removeprefix("recipe: error: ") if why
                         else f"{path}: the args reader failed (exit {p.returncode})")
    try:
        text = p.stdout.decode()
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: args file is not UTF-8 text (byte {e.start} of its flags)") from None
    return tuple(text.split("\0")[:-1])


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


# ---- validation ---------------------------------------------------------------------------------

_MISSING = object()


class _Table:
    """One TOML table and where it came from, with typed field readers that fail naming the field."""

    def __init__(self, file: Path, name: str, data: Any):
        self.file, self.name = file, name
        if not isinstance(data, dict):
            raise UsageError(f"{file}: [{name}] must be a table, got {type(data).__name__} {data!r}"[:300])
        self.data = data

    def _where(self, key: str) -> str:
        return f"{self.file}: field '{key}'" + (f" of [{self.name}]" if self.name else "")

    def _get(self, key: str, default: Any) -> Any:
        v = self.data.get(key, default)
        if v is _MISSING:
            raise UsageError(f"{self._where(key)} is required")
        return v

    def int(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> int:
        v = self._get(key, default)
        if v is None and default is None:
            return None  # type: ignore[return-value]
        if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
            want = "an integer" + (f" >= {minimum}" if minimum is not None else "")
            raise UsageError(f"{self._where(key)} must be {want}, got {v!r}")
        return v

    def num(self, key: str, default: Any = _MISSING) -> float | None:
        v = self._get(key, default)
        if v is None and default is None:
            return None
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise UsageError(f"{self._where(key)} must be a number >= 0, got {v!r}")
        return v

    def str(self, key: str, default: Any = _MISSING) -> str:
        v = self._get(key, default)
        if v is None and default is None:
            return None  # type: ignore[return-value]
        if not isinstance(v, str):
            raise UsageError(f"{self._where(key)} must be a string, got {v!r}")
        return v

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise UsageError(f"{self._where(key)} must be true or false, got {v!r}")
        return v

    def strs(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        v = self._get(key, default)
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            raise UsageError(f"{self._where(key)} must be a list of strings, got {v!r}")
        return tuple(v)

    def table(self, key: str, required: bool = True) -> _Table:
        if key not in self.data:
            if required:
                raise UsageError(f"{self.file}: table [{key}] is required")
            return _Table(self.file, key, {})
        return _Table(self.file, key if not self.name else f"{self.name}.{key}", self.data[key])


def _framework_table(data: Any, f: Path, framework: str) -> dict[str, Any]:
    """The recipe's [<framework>] table, kept whole for that framework's adapter to read."""
    if not isinstance(data, dict):
        raise UsageError(f"{f}: [{framework}] must be a table (the {framework} adapter's settings), got {data!r}")
    return dict(data)


def _cell(t: _Table, name: str) -> Cell:
    diff = t.data.get("measured_logprob_abs_diff")
    if diff is not None and (not isinstance(diff, list) or len(diff) != 2
                             or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in diff)):
        raise UsageError(f"{t._where('measured_logprob_abs_diff')} must be [low, high], got {diff!r}")
    layout = Layout(tp=t.int("tp", minimum=1), pp=t.int("pp", minimum=1), cp=t.int("cp", minimum=1),
                    ep=t.int("ep", minimum=1), etp=t.int("etp", minimum=1), sp=t.bool("sp", False))
    return Cell(name=name, layout=layout, max_tokens_per_gpu=t.int("max_tokens_per_gpu", minimum=1),
                description=t.str("description", ""),
                measured_logprob_abs_diff=(float(diff[0]), float(diff[1])) if diff else None)


def load_recipe_dir(path: Path) -> Recipe:
    f = path / RECIPE_FILE
    try:
        data = tomllib.loads(read_text(f, "recipe file"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{f}: not valid TOML ({e})") from None
    top = _Table(f, "", data)

    name = top.str("name")
    if name != path.name:
        raise UsageError(f"{f}: field 'name' must equal the directory name '{path.name}', got {name!r}")
    files_t = top.table("files")
    files = {k: files_t.str(k) for k in files_t.data}
    for key in FILE_KEYS:
        if key not in files:
            raise UsageError(f"{f}: [files] needs '{key}' (a path relative to the recipe directory)")

    img = top.table("image")
    image_pin = ImagePin(reference=img.str("reference"), cuda=img.str("cuda", ""),
                         min_driver=img.int("min_driver", None, minimum=1), python=img.str("python", ""),
                         lock=img.str("lock", None))
    pins_t = top.table("pins", required=False)
    commits = {k: pins_t.str(k) for k in pins_t.data}
    m = top.table("model", required=False)
    model = Source(repo=m.str("repo", ""), revision=m.str("revision", ""), dir=m.str("dir", "model"))
    d = top.table("data", required=False)
    data_src = Source(repo=d.str("repo", ""), revision=d.str("revision", ""), dir=d.str("dir", "data"),
                      repo_type=d.str("repo_type", "dataset"), file=d.str("file", ""))
    inputs_root = top.table("inputs", required=False).str("root", None)

    hw = top.table("hardware")
    hardware = Hardware(nodes=hw.int("nodes", minimum=1), gpus_per_node=hw.int("gpus_per_node", minimum=0),
                        gpu=hw.str("gpu", ""), min_gpu_memory_gib=hw.num("min_gpu_memory_gib", None),
                        min_shm_gib=hw.num("min_shm_gib", 0), min_free_disk_gib=hw.num("min_free_disk_gib", 0))
    run = top.table("run")
    run_defaults = RunDefaults(num_rollout=run.int("num_rollout", minimum=1), seed=run.int("seed", minimum=0),
                               rollout_seed=run.int("rollout_seed", minimum=0),
                               deterministic=run.bool("deterministic", False))
    det = top.table("determinism", required=False)
    determinism = Determinism(tier=det.str("tier", "unspecified"),
                              nondeterministic_metrics=det.strs("nondeterministic_metrics", ("perf/*",)))

    cells_t = top.table("cells")
    # `default_cell = "<name>"` at top level; `[cells] default = "<name>"` also accepted.
    default = top.str("default_cell", None) or cells_t.str("default", None)
    cells = {cname: _cell(cells_t.table(cname), cname) for cname, c in cells_t.data.items()
             if not (cname == "default" and isinstance(c, str))}
    if not cells:
        raise UsageError(f"{f}: no [cells.<name>] tables; a recipe needs at least one parallelism cell")
    if default not in cells:
        raise UsageError(f"{f}: default_cell = {default!r} is not one of: {', '.join(cells)}")
    # Which names have an adapter is the registry's to say (runner/frameworks/, a layer above this
    # one): framework_of() refuses an unknown name, naming this field. Here only its form is checked.
    framework = top.str("framework", "")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", framework):
        raise UsageError(f"{f}: field 'framework' must name a framework adapter (for example \"miles\"), "
                         f"got {framework!r}")
    return Recipe(name=name, dir=path, title=top.str("title", ""), framework=framework,
                  image_pin=image_pin, commits=commits, model=model, dataset=data_src, inputs_root=inputs_root,
                  hardware=hardware, run_defaults=run_defaults, determinism=determinism, cells=cells,
                  default_cell=default, files=files, host_extras=top.strs("host_extras", ()),
                  model_family=m.str("family", ""), record_packages=top.strs("record_packages", ()),
                  framework_options=_framework_table(top.data.get(framework, {}), f, framework))
