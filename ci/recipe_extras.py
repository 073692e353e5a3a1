"""Print the pip extras a recipe needs on the host (recipe.toml `host_extras`), comma-separated.

Used by the Justfile so that `just run RECIPE` bootstraps exactly what that recipe needs. A recipe that
runs on the host (it has host extras) also gets `report`: the README's next step after its run is
`recipe report RUN`, which draws with matplotlib.
Unknown recipes print nothing: `recipe run` then reports the error with the valid names.
"""

import json
import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parent.parent
args = sys.argv[1:]
if args[:1] == ["--run-dir"]:
    try:
        name = json.loads((Path(args[1]) / "run.json").read_text())["recipe"]
    except (OSError, ValueError, KeyError, IndexError):
        sys.exit(0)
else:
    name = args[0] if args else ""
f = root / "recipes" / name / "recipe.toml"
if name and "/" not in name and f.is_file():
    try:
        extras = tomllib.loads(f.read_text()).get("host_extras", [])
        print(",".join(extras + ["report"] if extras and "report" not in extras else extras))
    except tomllib.TOMLDecodeError:
        pass
