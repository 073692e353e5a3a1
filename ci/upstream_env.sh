#!/usr/bin/env bash
# Set up the real upstream stack of the 30B recipe for the `upstream` tests, on CPU.
#
#   ci/upstream_env.sh [SOURCES_DIR]   (default: shared/vendor/upstream beside the checkout)
#
# miles, radixark/Megatron-LM and two NVIDIA-NeMo/Megatron-Bridge commits are not on a package
# index at their pins, so CI keeps their source tarballs beside the checkout (never in the repo).
# SHA256SUMS there is checked first. The result goes to $RECIPE_UPSTREAM_DIR (default
# /opt/recipe-upstream), outside the repo and apart from the project's .venv (the runner's own
# start-up never sees it):
#
#   $RECIPE_UPSTREAM_DIR/current -> env-<key>/
#     src/miles-78527b91/ src/Megatron-LM-37f91617/ src/Megatron-Bridge-{73eb4b27,98dd9f95}/
#     venv/   Python with what miles' parser and the bridge's provider need on CPU
#             (ci/upstream/requirements.txt: every package == pinned with its sha256, installed
#             --no-deps, so nothing floats), plus the TEST-ONLY GPU answers of
#             ci/upstream/recipe_upstream_gpu_shim.py (see that file and docs/upstream-checks.md).
#
# <key> hashes the tarballs' SHA256SUMS, the requirements, the shim, this script and the Python
# version: a second run with the same inputs finds env-<key>/.built and does nothing.
# Builds go to a temporary directory and are renamed into place only when complete.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${1:-$ROOT/../shared/vendor/upstream}
DEST=${RECIPE_UPSTREAM_DIR:-/opt/recipe-upstream}
PY=${PYTHON:-python3}
REQS=$ROOT/ci/upstream/requirements.txt
SHIM=$ROOT/ci/upstream/recipe_upstream_gpu_shim.py

log() { printf '[upstream_env] %s\n' "$*" >&2; }
die() { printf 'upstream_env: error: %s\n' "$*" >&2; exit 1; }

if [[ ! -d "$SRC" ]]; then
  # CI always has them; elsewhere the upstream tests then skip (and fail under CI=true).
  [[ "${CI:-}" == true ]] && die "no source directory $SRC (expected miles-*, Megatron-LM-*, Megatron-Bridge-* tarballs and SHA256SUMS)"
  log "no source directory $SRC: upstream test environment not built"
  exit 0
fi
[[ -f "$SRC/SHA256SUMS" ]] || die "$SRC/SHA256SUMS not found"
(cd "$SRC" && sha256sum --quiet --strict -c SHA256SUMS) || die "checksums in $SRC/SHA256SUMS do not match"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  die "$PY is not Python 3.11 (the pinned wheels in $REQS are for cp311; set PYTHON=)"

key=$( { cat "$SRC/SHA256SUMS" "$REQS" "$SHIM" "${BASH_SOURCE[0]}"; "$PY" -VV; } | sha256sum | cut -c1-16)
final=$DEST/env-$key
if [[ -f "$final/.built" && "$(<"$final/.built")" == "$key" ]]; then
  log "already set up in $final"
else
  mkdir -p "$DEST"
  tmp=$(mktemp -d "$DEST/.env-build.XXXXXX")
  chmod 755 "$tmp"
  # shellcheck disable=SC2064 # expand now: this build's own directory
  trap "rm -rf '$tmp'" EXIT
  mkdir "$tmp/src"
  while read -r _ file; do
    [[ "$file" == *.tar.gz ]] && tar -xzf "$SRC/$file" -C "$tmp/src"
  done <"$SRC/SHA256SUMS"
  log "building the upstream test venv in $final (from $REQS)"
  "$PY" -m venv "$tmp/venv"
  # --no-deps with a complete hashed lock: exactly these files, whatever the index holds.
  "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$REQS" 2>&1 | grep -v "^WARNING: Location '.*' is ignored" >&2 || true
  site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  install -m 644 "$SHIM" "$site/recipe_upstream_gpu_shim.py"
  printf 'import recipe_upstream_gpu_shim\n' >"$site/recipe_upstream_gpu_shim.pth"
  "$tmp/venv/bin/python" -m pip check >&2 || log "pip check lists the packages installed --no-deps on purpose (see $REQS)"
  "$tmp/venv/bin/python" -c 'import torch, torchvision, transformers, sglang.srt.server_args' ||
    die "the upstream test venv does not import torch, torchvision, transformers and sglang"
  printf '%s\n' "$key" >"$tmp/.built"
  rm -rf "$final"
  mv "$tmp" "$final"
  trap - EXIT
fi
ln -sfn "$(basename "$final")" "$DEST/current.tmp" && mv -T "$DEST/current.tmp" "$DEST/current"
log "upstream sources in $DEST/current/src, venv $DEST/current/venv"
