#!/usr/bin/env bash
# Regenerate recipes/nemotron3_nano_tiny/requirements.lock from requirements.in beside it:
# every distribution of the resolved closure pinned to one version and the sha256 of its wheel for
# CPython 3.11 on x86_64 Linux. pip's own resolver decides (docker/lock.py), run by a pinned pip in a
# throwaway venv so the result depends only on requirements.in and what the indexes hold.
# Then regenerate the recipe's tag manifest: a changed lock is a changed recipe.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PIP_VERSION=26.3
python=${PYTHON:-python3}
dir=recipes/nemotron3_nano_tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "pip==$PIP_VERSION"
"$tmp/venv/bin/python" docker/lock.py "$dir/requirements.lock" -r "$dir/requirements.in"
echo "now: recipe lock nemotron3_nano_tiny --recipe-files" >&2
