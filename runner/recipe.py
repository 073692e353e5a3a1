"""Recipe loading: `recipes/<name>/recipe.toml` and its frozen model args file, against one schema.

The schema is the classes below (pydantic models): every table, key, type, bound and default of
recipe.toml is stated here and nowhere else. A key or table the schema does not know, a `schema`
version other than SCHEMA, a value of the wrong type: exit 2 with one line naming the file, the table,
the key and, for an unknown key, the nearest valid name. The table named after the framework
(`[miles]`, `[trl]`) is that framework adapter's schema (runner/frameworks/), checked the same way by
`framework_table`.

pydantic v2 rather than msgspec: both would do, but pydantic is already everywhere the runner runs
(the miles image installs it, Ray and SGLang need it; the CPU base and the tiny lock hold it through
ray[default]), so the schema adds no package to any image; its errors are structured (a location and
a kind), so the one-line message needs no parsing of text. It is imported only by verbs that load a
recipe (about 60 ms), never by `recipe --help`.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import UsageError
from runner.layout import Layout
from runner.paths import recipes_dir

RECIPE_FILE = "recipe.toml"
SCHEMA = 1  # the recipe.toml schema this runner reads

Pos = Annotated[int, Field(strict=True, ge=1)]
NonNeg = Annotated[int, Field(strict=True, ge=0)]
Gib = Annotated[float, Field(strict=True, ge=0)]  # strict: 16 and 1.5, never "16"
Str = Annotated[str, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]


class Table(BaseModel):
    """A table of recipe.toml: unknown keys refused, every default stated on its field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- the tables ---------------------------------------------------------------------------------

class Files(Table):
    model_args: Str  # the frozen model flags, one per line
    run_script: Str  # what runs on the head node
    expected_metrics: Str
    manifest: Str  # inputs.sha256, sha256sum -c format relative to the inputs root
    recipe_manifest: Str = "recipe.sha256"  # tag manifest of the recipe directory's own files
    hf_config: Str = "hf_config.json"  # the model's config.json as shipped (or its published fields)


class ImagePin(Table):
    reference: Str  # NAME[:TAG]@sha256:DIGEST, or "none" (the recipe runs on the host's Python)
    cuda: Str = ""
    min_driver: Pos | None = None  # the host driver the image's CUDA needs (R<n>)
    python: Str = ""
    lock: Str | None = None  # the image lock, relative to the bundle root (None: docker/image.lock)


class Source(Table):
    """A Hugging Face repo at a revision: the model ([model]) or the data set ([data])."""

    repo: Str = ""
    revision: Str = ""
    dir: Str = ""  # under the inputs root
    repo_type: Str = "model"
    file: Str = ""  # the data set file (data only)
    family: Str = ""  # [model] only: the family module under recipes/lib/families (default: model_type)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v and k != "family"}


class Inputs(Table):
    root: Str | None = None  # a recipe that ships its inputs: relative to its directory


class Disk(Table):
    """What a run writes to disk, in parts ([hardware.disk]); the disk preflight adds up the parts that
    share a file system (runner/launch/disk.py). A checkpoint is the model's parameter count (its
    config.json, through its family's shape) times the bytes each parameter's saved states take."""

    checkpoint_bytes_per_param: dict[Str, Pos]  # saved state -> bytes per parameter (weights_bf16 = 2, ...)
    checkpoints_kept: Pos  # checkpoints one run leaves under the output dir
    ray_spill_gib: Gib = 0  # Ray object spilling, under Ray's temp dir
    logs_gib: Gib = 0  # the run's logs and Ray's session logs


class Hardware(Table):
    nodes: Pos
    gpus_per_node: NonNeg  # 0: a CPU recipe
    gpu: Str = ""
    min_gpu_memory_gib: Gib | None = None
    min_shm_gib: Gib = 0
    disk: Disk | None = None  # None: the run writes nothing big (its records only)


class RunDefaults(Table):
    num_rollout: Pos
    seed: NonNeg
    rollout_seed: NonNeg
    deterministic: Bool = False


class Determinism(Table):
    tier: Str = "unspecified"  # bitwise | statistical | unspecified
    nondeterministic_metrics: tuple[Str, ...] = ("perf/*",)


class Cell(Table):
    """One parallelism layout of a recipe ([cells.<name>]); `name` is the table's name."""

    tp: Pos
    pp: Pos
    cp: Pos
    ep: Pos
    etp: Pos
    max_tokens_per_gpu: Pos
    sp: Bool = False
    description: Str = ""
    measured_logprob_abs_diff: tuple[float, float] | None = None
    name: Str = ""  # set from the table's name at load; refused as a key

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, cp=self.cp, ep=self.ep, etp=self.etp, sp=self.sp)

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "cp": self.cp, "ep": self.ep, "etp": self.etp, "sp": self.sp,
                "max_tokens_per_gpu": self.max_tokens_per_gpu}


class RecipeFile(Table):
    """recipe.toml, whole. The framework's own table is kept raw here and typed by its adapter."""

    schema_: int = Field(alias="schema")
    name: Str
    framework: Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_]*$")]  # the adapter (runner/frameworks)
    files: Files
    image: ImagePin
    hardware: Hardware
    run: RunDefaults
    cells: dict[str, Cell]
    default_cell: Str  # the cell `recipe run` uses unless --cell says otherwise
    title: Str = ""
    record_packages: tuple[Str, ...] = ()  # distributions whose versions run.json records
    host_extras: tuple[Str, ...] = ()  # pip extras of this bundle the job's interpreter needs (CPU recipes)
    pins: dict[str, Str] = {}
    model: Source = Source(dir="model")
    data: Source = Source(dir="data", repo_type="dataset")
    inputs: Inputs = Inputs()
    determinism: Determinism = Determinism()


# ---- the loaded recipe --------------------------------------------------------------------------

class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: RecipeFile
    dir: Path
    framework_options: dict[str, Any]  # the [<framework>] table, typed by the adapter (framework_table)

    name = property(lambda self: self.spec.name)
    title = property(lambda self: self.spec.title)
    framework = property(lambda self: self.spec.framework)
    image_pin = property(lambda self: self.spec.image)
    commits = property(lambda self: self.spec.pins)
    model = property(lambda self: self.spec.model)
    dataset = property(lambda self: self.spec.data)
    inputs_root = property(lambda self: self.spec.inputs.root)
    hardware = property(lambda self: self.spec.hardware)
    run_defaults = property(lambda self: self.spec.run)
    determinism = property(lambda self: self.spec.determinism)
    cells = property(lambda self: self.spec.cells)
    default_cell = property(lambda self: self.spec.default_cell)
    host_extras = property(lambda self: self.spec.host_extras)
    model_family = property(lambda self: self.spec.model.family)
    record_packages = property(lambda self: self.spec.record_packages)

    @property
    def files(self) -> dict[str, str]:
        """The files recipe.toml names ([files] as written; `path` also knows the defaults)."""
        return self.spec.files.model_dump(exclude_unset=True)

    @property
    def image(self) -> str:
        return self.spec.image.reference

    @property
    def pins(self) -> dict[str, Any]:
        return {"image": self.spec.image.model_dump(), "commits": dict(self.spec.pins),
                "model": self.spec.model.as_dict(), "data": self.spec.data.as_dict()}

    def path(self, key: str) -> Path:
        """Absolute path of one of the recipe's files (`model_args`, `run_script`, ...)."""
        return self.dir / getattr(self.spec.files, key)

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
    """Flags of a one-flag-per-line file (model_args.txt).

    Blank lines and lines whose first non-blank is # are skipped; every other line is split on
    spaces and tabs, with no quoting (a quote or backslash is part of its word). Any other control
    character is refused, naming the line: a carriage return (CRLF endings) would stay glued to the
    last flag, and a shell drops a NUL byte, gluing two words.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise UsageError(f"{path}: cannot read args file ({e.strerror})") from None
    return list(_read_args(path.resolve(), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@functools.lru_cache(maxsize=64)
def _read_args(path: Path, *stamp: int) -> tuple[str, ...]:  # stamp: the file as it was read
    words: list[str] = []
    for n, line in enumerate(read_text(path, "args file").split("\n"), 1):
        bad = _CONTROL.search(line)
        if bad:
            what = {"\r": "a carriage return (CRLF line endings?); save it with LF endings",
                    "\0": "a NUL byte; remove it"}.get(bad.group(), f"the control character {bad.group()!r}")
            raise UsageError(f"{path}: line {n} holds {what}")
        line = line.strip(" \t")
        if line and not line.startswith("#"):
            words += re.split(r"[ \t]+", line)
    return tuple(words)


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

T = TypeVar("T", bound=BaseModel)


def typed(data: Any, schema: type[T], file: Path, table: str = "") -> T:
    """`data` as `schema`, or a one-line usage error naming the file, the table, the key and, for an
    unknown key, the nearest valid name."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        # an unknown key first: a typo of a required key is reported as the typo, not as "missing"
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        loc = [str(k) for k in err["loc"] if not isinstance(k, int)]
        item = next((f" (item {k + 1})" for k in err["loc"] if isinstance(k, int)), "")
        where = ".".join([table, *loc[:-1]] if table else loc[:-1])
        at = f"[{where}]" if where else "the top level"
        key = loc[-1] if loc else ""
        if err["type"] == "extra_forbidden":
            valid = _keys_at(schema, loc[:-1])
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
            raise UsageError(f"{file}: {at} has no key '{key}'; {hint}") from None
        got = repr(err.get("input"))[:80] if err["type"] != "missing" else ""
        raise UsageError(f"{file}: {at} key '{key}'{item}: {err['msg'].lower()}" + (f", got {got}" if got else "")) \
            from None


def _keys_at(schema: Any, loc: list[str]) -> list[str]:
    """The keys the schema allows in the table at `loc` (dict levels skip the dict's own key)."""
    model = schema
    for k in loc:
        field = model.model_fields.get(k) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            continue  # a dict's key (a cell's name): the dict's value type is `model` already
        model = field.annotation
        for arg in getattr(model, "__args__", ()) or ():  # dict[str, X] -> X, X | None -> X
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or n for n, f in model.model_fields.items() if not (model is Cell and n == "name")]


def load_recipe_dir(path: Path) -> Recipe:
    f = path / RECIPE_FILE
    try:
        data = tomllib.loads(read_text(f, "recipe file"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{f}: not valid TOML ({e})") from None
    if data.get("schema") != SCHEMA or isinstance(data.get("schema"), bool):
        raise UsageError(f"{f}: schema = {data.get('schema')!r}: this runner reads recipe.toml schema {SCHEMA}"
                         + ("" if "schema" in data else " (add `schema = 1` at the top)"))
    framework = data.get("framework")
    # Which names have an adapter is the registry's to say (runner/frameworks, a layer above this
    # one); here only the form, before the [<framework>] table is looked for.
    if not isinstance(framework, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", framework):
        raise UsageError(f"{f}: key 'framework' must name a framework adapter (for example \"miles\"), "
                         f"got {framework!r}")
    options = data.pop(framework, {}) if isinstance(framework, str) and framework not in RecipeFile.model_fields \
        else {}
    if not isinstance(options, dict):
        raise UsageError(f"{f}: [{framework}] must be a table (the {framework} adapter's settings)")
    for cname, c in (data["cells"].items() if isinstance(data.get("cells"), dict) else ()):
        if isinstance(c, dict) and "name" in c:
            raise UsageError(f"{f}: [cells.{cname}] has no key 'name' (a cell is named by its table)")
    spec = typed(data, RecipeFile, f)
    if spec.name != path.name:
        raise UsageError(f"{f}: key 'name' must equal the directory name '{path.name}', got {spec.name!r}")
    if not spec.cells:
        raise UsageError(f"{f}: no [cells.<name>] tables; a recipe needs at least one parallelism cell")
    if spec.default_cell not in spec.cells:
        raise UsageError(f"{f}: default_cell = {spec.default_cell!r} is not one of: {', '.join(spec.cells)}")
    cells = {n: c.model_copy(update={"name": n}) for n, c in spec.cells.items()}
    return Recipe(spec=spec.model_copy(update={"cells": cells}), dir=path, framework_options=options)


def framework_table(recipe: Recipe, schema: type[T]) -> T:
    """The recipe's [<framework>] table as the adapter's schema (unknown keys refused the same way)."""
    return typed(recipe.framework_options, schema, recipe.dir / RECIPE_FILE, recipe.framework)
