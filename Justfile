# recipe-bundle: `just run nemotron3_nano` and `just test` are the two commands that matter.
# No `just`? python3 -m pip install rust-just   (or run ci/just, which does that for you)

set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach recipe lines as "$1", "$@": quoted, never re-split.
set positional-arguments := true

venv := ".venv"
recipe_bin := venv + "/bin/recipe"

# List the recipes of this Justfile.
default:
    @just --list

# Create or refresh .venv with the runner (and optional extras, e.g. `just bootstrap test,hub`).
bootstrap extras="":
    ci/bootstrap.sh "$1"

# Any `recipe` verb, bootstrapping .venv first (`just recipe runs`); runs in the bundle root, as all recipes here.
# The recipes named like a verb (run, plan, lint, check, ...) are that verb with its bootstrap.
recipe *args:
    ci/bootstrap.sh ""
    {{recipe_bin}} "$@"

# Preflight, then run a recipe (extra args go to `recipe run`, e.g. --cell ep4 --dry-run).
run recipe *args:
    ci/bootstrap.sh "$(python3 ci/recipe_extras.py "$1")"
    {{recipe_bin}} run "$@"

# Print the fully resolved launch of a recipe (extra args go to `recipe plan`).
plan recipe *args:
    ci/bootstrap.sh ""
    {{recipe_bin}} plan "$@"

# Replay a recorded run and compare its metrics.
replay run_dir *args:
    ci/bootstrap.sh "$(python3 ci/recipe_extras.py --run-dir "$1")"
    {{recipe_bin}} replay "$@"

# Download a recipe's model and data at the pinned revisions, hashing while downloading (token: HF_TOKEN).
fetch recipe *args:
    ci/bootstrap.sh hub
    {{recipe_bin}} fetch "$@"

# Verify a recipe's inputs against its sha256 manifest (exit 4 missing, 5 corrupt).
verify recipe *args:
    ci/bootstrap.sh ""
    {{recipe_bin}} verify "$@"

# Rewrite a recipe's tag manifest (recipe.sha256) after editing any of its files.
lock-recipe-files recipe:
    ci/bootstrap.sh ""
    {{recipe_bin}} lock "$1" --recipe-files

# Benchmark `recipe verify` against sha256sum and this machine's hashing limit.
bench-verify:
    ci/bootstrap.sh ""
    {{venv}}/bin/python bench/bench_verify.py

# Evaluate a run's metrics against its recipe's expected metrics (the gate).
check run_dir *args:
    ci/bootstrap.sh ""
    {{recipe_bin}} check "$@"

# Lint a recipe (`recipe lint`): its flags against its checkpoint's config.json, R3, layouts, memory.
lint recipe *args:
    ci/bootstrap.sh ""
    {{recipe_bin}} lint "$@"

# The whole test suite: installs and starts what the tests need (Slurm, Docker, Ray), then pytest.
test *args:
    ci/test.sh "$@"

# Static checks of the bundle's own code: ruff on Python, shellcheck on every shell script.
check-code:
    ci/bootstrap.sh test
    {{venv}}/bin/ruff check runner tests ci bench tools recipes
    {{venv}}/bin/shellcheck -x -P SCRIPTDIR $(git ls-files '*.sh') recipes/*/run.sh .ci/run ci/just

# Rewrite the committed plan snapshots after an intended change of a recipe's launch.
snapshots:
    ci/bootstrap.sh test
    UPDATE_SNAPSHOTS=1 {{venv}}/bin/python -m pytest -q tests/test_plan_snapshots.py tests/test_sbatch_render.py

# Time the tiny recipe's set-up (ci/bootstrap.sh tiny,report) with pip and with uv, cold and warm cache.
bench-bootstrap *args:
    python3 bench/bench_bootstrap.py "$@"

# Time `recipe --help` start-up (a benchmark, not a test).
bench-startup:
    ci/bootstrap.sh ""
    {{venv}}/bin/python bench/bench_startup.py

# --- the image: build, push, stage; every base comes by digest from docker/image.lock -----------

# Build the recipe image on the locked miles base (or BASE=<name@sha256:...>), tagged TAG.
image-build tag="recipe-bundle:local" base="":
    docker/image.sh build "$1" ${2:+"$2"}

# Push TAG to REPO[:TAG]; prints the REPO@sha256:... reference to pin (RECIPE_IMAGE=...).
image-push tag repo:
    docker/image.sh push "$1" "$2"

# Stage a digest reference as DIR/<repo>+sha256-<hex>.sqsh for pyxis (enroot >= 4.0 on this host).
image-stage ref dir=".":
    docker/image.sh stage "$1" "$2"

# Print the image lock's base reference (what image-build builds on).
image-base:
    docker/image.sh base

# Start/stop the private Docker engine + registry on 127.0.0.1 the image tests use.
docker-engine action="start":
    tests/services/docker_engine.sh "$1"

# Measure the CPU image chain (mmdebstrap, cpu-base, recipe image, rebuild, push, pull, tiny run).
bench-image:
    ci/bootstrap.sh test,tiny
    .venv/bin/python bench/bench_image.py
