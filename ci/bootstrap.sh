#!/usr/bin/env bash
# Create or refresh the project's virtual environment, idempotently.
#   ci/bootstrap.sh [EXTRAS]      e.g. ci/bootstrap.sh test,hub
# Reinstalls only when pyproject.toml or the requested extras changed (a stamp records both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=${1:-}
venv=${RECIPE_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "recipe: error: need Python >= 3.11 as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 3
fi

stamp_value="$(sha256sum pyproject.toml | cut -c1-16) extras=$extras"
stamp_file="$venv/.bootstrap-stamp"
if [[ -x "$venv/bin/recipe" && -f "$stamp_file" ]] && grep -qxF -- "$stamp_value" "$stamp_file"; then
  exit 0
fi
# A stamp that lists a superset of extras also satisfies the request.
if [[ -x "$venv/bin/recipe" && -f "$stamp_file" && -n "$extras" ]]; then
  have=$(sed -n 's/.* extras=//p' "$stamp_file")
  missing=0
  IFS=, read -r -a want <<<"$extras"
  for e in "${want[@]}"; do [[ ",$have," == *",$e,"* ]] || missing=1; done
  if [[ $missing == 0 && "$(cut -d' ' -f1 "$stamp_file")" == "${stamp_value%% *}" ]]; then exit 0; fi
  extras="$have,$extras"
  stamp_value="${stamp_value%% *} extras=$extras"
fi

echo "recipe: bootstrapping $venv (extras: ${extras:-none})" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
"$venv/bin/python" -m pip install -q -e "$spec"
printf '%s\n' "$stamp_value" >"$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"
