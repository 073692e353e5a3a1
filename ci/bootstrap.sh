#!/usr/bin/env bash
# Create or refresh the project's virtual environment, idempotently.
#   ci/bootstrap.sh [EXTRAS]      e.g. ci/bootstrap.sh test,hub
# Installs only when pyproject.toml or a lock changed or an extra is asked for that the venv lacks;
# the stamp file records both, and extras once installed are kept. An extra with a hash lock
# (pyproject.toml [tool.recipe-bundle.locks]) is installed from it first: exact versions, each wheel
# checked against its sha256 (pip --require-hashes), so two machines get the same packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want=${1:-}
venv=${RECIPE_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "recipe: error: need Python >= 3.11 as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 3
fi

locks_of() {  # locks_of EXTRAS: the lock file of each named extra that has one, one a line
  "$python" -c '
import sys, tomllib
locks = tomllib.load(open("pyproject.toml", "rb")).get("tool", {}).get("recipe-bundle", {}).get("locks", {})
for e in sys.argv[1].split(","):
    if e in locks:
        print(locks[e])' "$1"
}

mapfile -t all_locks < <(locks_of "$("$python" -c '
import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')")
hash=$(cat pyproject.toml "${all_locks[@]}" | sha256sum | cut -c1-16)
stamp_file="$venv/.bootstrap-stamp"
have_hash="" have_extras=""
if [[ -x "$venv/bin/recipe" && -f "$stamp_file" ]]; then
  read -r have_hash have_extras <"$stamp_file" || true
  have_extras=${have_extras#extras=}
fi

# The extras to have afterwards: those installed (if nothing changed) plus those wanted.
extras=""
[[ "$have_hash" == "$hash" ]] && extras=$have_extras
missing=0
IFS=, read -r -a wanted <<<"$want"
for e in "${wanted[@]}"; do
  [[ -z "$e" || ",$extras," == *",$e,"* ]] && continue
  extras="${extras:+$extras,}$e"
  missing=1
done
if [[ "$have_hash" == "$hash" && $missing == 0 ]]; then exit 0; fi

echo "recipe: bootstrapping $venv (extras: ${extras:-none})" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
log="$venv/bootstrap.log"
: >"$log"
mapfile -t locks < <(locks_of "$extras")
for lock in "${locks[@]}"; do
  n=$(grep -c -- '--hash=sha256:' "$lock")
  echo "recipe: installing $n locked packages from $lock (pip --require-hashes; log: $log)" >&2
  # One short line per package as it is fetched; the full output goes to the log.
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --require-hashes --no-deps \
       --progress-bar off -r "$lock" 2>&1 | tee -a "$log" | while IFS= read -r line; do
         if [[ -t 2 && "$line" == Collecting* ]]; then printf '\r\033[K  %s' "${line#Collecting }" >&2; fi
       done; then
    echo >&2
    echo "recipe: error: installing $lock failed; see $log" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
  if [[ -t 2 ]]; then printf '\r\033[K' >&2; fi
done
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
echo "recipe: installing the runner ($spec)" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 | grep -v '^WARNING: Location' >&2 || true
"$venv/bin/python" -c 'import runner.cli' || { echo "recipe: error: the runner did not install; see above" >&2; exit 1; }
printf '%s extras=%s\n' "$hash" "$extras" >"$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"
# The last line says how to type `recipe` itself (the README uses `recipe ...` after a bootstrap).
bin_dir="$(cd "$venv/bin" && pwd)"
echo "recipe: ready. To type \`recipe\` directly: source $(printf '%q' "$bin_dir/activate")  (or export PATH=$(printf '%q' "$bin_dir"):\$PATH; or use \`just recipe ARGS\`)" >&2
