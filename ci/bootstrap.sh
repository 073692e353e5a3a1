#!/usr/bin/env bash
# Create or refresh the project's virtual environment, idempotently.
#   ci/bootstrap.sh [EXTRAS]      e.g. ci/bootstrap.sh test,hub
#   ci/bootstrap.sh --uv          print the path of the project's pinned uv, installing it first if needed
# Installs only when pyproject.toml or a lock changed or an extra is asked for that the venv lacks;
# the stamp file records both, and extras once installed are kept. An extra with a hash lock
# (pyproject.toml [tool.recipe-bundle.locks]) is installed from it first: exact versions, each wheel
# checked against its sha256 (--require-hashes), so two machines get the same packages.
# The installer is uv (pinned, installed from PyPI by pip into .tools/ once) where it can be had, else
# pip; RECIPE_INSTALLER=pip|uv chooses. uv is given pip's configured sources (ci/uv_sources.py).
# Afterwards `recipe` is linked into ~/.local/bin (RECIPE_LINK_DIR; empty: no link), as pipx and uv do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UV_VERSION=0.13.10
want=${1:-}
venv=${RECIPE_VENV:-.venv}
python=${PYTHON:-python3}
tools=${RECIPE_TOOLS:-.tools}
installer=${RECIPE_INSTALLER:-auto}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "recipe: error: need Python >= 3.11 as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 3
fi

get_uv() {  # the pinned uv's path on stdout, installing it into $tools if needed; fails quietly
  local dir="$tools/uv-$UV_VERSION"
  if [[ ! -x "$dir/bin/uv" ]]; then
    rm -rf "$dir.tmp"
    if ! "$python" -m pip install -q --disable-pip-version-check --target "$dir.tmp" "uv==$UV_VERSION" >/dev/null 2>&1 \
       || [[ ! -x "$dir.tmp/bin/uv" ]]; then
      rm -rf "$dir.tmp"
      return 1
    fi
    mv "$dir.tmp" "$dir"
  fi
  echo "$(cd "$dir/bin" && pwd)/uv"
}

if [[ "$want" == --uv ]]; then
  get_uv || { echo "recipe: error: could not install uv==$UV_VERSION from PyPI into $tools" >&2; exit 3; }
  exit 0
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

uv=""
case $installer in
  pip) ;;
  uv) uv=$(get_uv) || { echo "recipe: error: RECIPE_INSTALLER=uv but uv==$UV_VERSION could not be installed" >&2; exit 3; } ;;
  auto) uv=$(get_uv) || echo "recipe: uv could not be installed from PyPI; installing with pip" >&2 ;;
  *) echo "recipe: error: RECIPE_INSTALLER must be pip or uv, not '$installer'" >&2; exit 2 ;;
esac
sources=()
[[ -n "$uv" ]] && mapfile -t sources < <("$python" ci/uv_sources.py)

echo "recipe: bootstrapping $venv (extras: ${extras:-none}; installer: $([[ -n "$uv" ]] && echo "uv $UV_VERSION" || echo pip))" >&2
if [[ ! -x "$venv/bin/python" ]]; then
  # uv makes the venv in a second where `python -m venv` takes several (pip comes with the runner below)
  if [[ -n "$uv" ]]; then "$uv" venv -q --python "$python" "$venv"; else "$python" -m venv "$venv"; fi
fi
log="$venv/bootstrap.log"
: >"$log"
# One short line on a terminal as the installer goes, the full output in the log; on failure its tail.
progress() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$log"
    [[ -t 2 ]] || continue
    case $line in
      Collecting*) printf '\r\033[K  %s' "${line#Collecting }" >&2 ;;
      Downloading* | " Downloaded "* | Prepared* | Installed*) printf '\r\033[K  %.70s' "${line# }" >&2 ;;
    esac
  done
  if [[ -t 2 ]]; then printf '\r\033[K' >&2; fi
}
install() {  # install WHAT ARGS...: the installer's run, with progress; exit 1 naming WHAT on failure
  local what=$1 t0=$SECONDS
  shift
  if [[ -n "$uv" ]]; then
    set -- "$uv" pip install --python "$venv/bin/python" "${sources[@]}" "$@"
  else
    set -- "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "$@"
  fi
  if ! "$@" 2>&1 | progress; then
    echo "recipe: error: installing $what failed; see $log" >&2
    grep -v '^WARNING: Location' "$log" | tail -n 5 >&2
    exit 1
  fi
  echo "recipe: installed $what in $((SECONDS - t0)) s" >&2
}
if [[ -z "$uv" ]]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
fi
mapfile -t locks < <(locks_of "$extras")
for lock in "${locks[@]}"; do
  n=$(grep -cE '^[A-Za-z0-9_.-]+==' "$lock")
  echo "recipe: installing $n locked packages from $lock (--require-hashes; log: $log)" >&2
  install "$lock" --require-hashes --no-deps -r "$lock"
done
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
echo "recipe: installing the runner ($spec)" >&2
if [[ -n "$uv" ]]; then install "the runner" -e "$spec" pip; else install "the runner" -e "$spec"; fi
"$venv/bin/python" -c 'import runner.cli' || { echo "recipe: error: the runner did not install; see above" >&2; exit 1; }
printf '%s extras=%s\n' "$hash" "$extras" >"$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"

# `recipe` on PATH the way pipx and uv put their tools there: a link in ~/.local/bin (for the checkout's
# own .venv; another RECIPE_VENV, as tests and benches use, links only where RECIPE_LINK_DIR says),
# never replacing a `recipe` there that is not a link.
bin_dir="$(cd "$venv/bin" && pwd)"
default_link_dir=""
[[ "$venv" == .venv && -n "${HOME:-}" ]] && default_link_dir=$HOME/.local/bin
link_dir=${RECIPE_LINK_DIR-$default_link_dir}
linked=""
if [[ -n "$link_dir" ]]; then
  link="$link_dir/recipe"
  if [[ -L "$link" || ! -e "$link" ]] && mkdir -p "$link_dir" 2>/dev/null && ln -sfn "$bin_dir/recipe" "$link" 2>/dev/null; then
    linked=$link
  elif [[ "$(readlink "$link" 2>/dev/null)" != "$bin_dir/recipe" ]]; then
    echo "recipe: $link exists and is not a link; left as it is" >&2
  fi
fi
if [[ -n "$linked" ]] && [[ ":$PATH:" == *":$link_dir:"* ]]; then
  echo "recipe: ready. \`recipe\` is on your PATH: $(printf '%q' "$linked") -> $(printf '%q' "$bin_dir/recipe")" >&2
elif [[ -n "$linked" ]]; then
  echo "recipe: ready. Linked $(printf '%q' "$linked") -> $(printf '%q' "$bin_dir/recipe"), but $(printf '%q' "$link_dir") is not on your PATH: add it once with  echo 'export PATH=\"$(printf '%q' "$link_dir"):\$PATH\"' >> ~/.bashrc  and open a new shell (or use \`just recipe ARGS\`)" >&2
else
  # The last line says how to type `recipe` itself (the README uses `recipe ...` after a bootstrap).
  echo "recipe: ready. To type \`recipe\` directly: source $(printf '%q' "$bin_dir/activate")  (or export PATH=$(printf '%q' "$bin_dir"):\$PATH; or use \`just recipe ARGS\`)" >&2
fi
