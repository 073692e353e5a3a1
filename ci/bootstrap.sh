#!/usr/bin/env bash
# Create or refresh the project's virtual environment, idempotently.
#   ci/bootstrap.sh [EXTRAS]      e.g. ci/bootstrap.sh test,hub
# Installs only when pyproject.toml changed or an extra is asked for that the venv lacks; the
# stamp file records both, and extras once installed are kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want=${1:-}
venv=${RECIPE_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "recipe: error: need Python >= 3.11 as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 3
fi

hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp_file="$venv/.bootstrap-stamp"
have_hash="" have_extras=""
if [[ -x "$venv/bin/recipe" && -f "$stamp_file" ]]; then
  read -r have_hash have_extras <"$stamp_file" || true
  have_extras=${have_extras#extras=}
fi

# The extras to have afterwards: those installed (if pyproject.toml is unchanged) plus those wanted.
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
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
printf '%s extras=%s\n' "$hash" "$extras" >"$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"
# The last line says how to type `recipe` itself (the README uses `recipe ...` after a bootstrap).
bin_dir="$(cd "$venv/bin" && pwd)"
echo "recipe: ready. To type \`recipe\` directly: source $(printf '%q' "$bin_dir/activate")  (or export PATH=$(printf '%q' "$bin_dir"):\$PATH; or use \`just recipe ARGS\`)" >&2
