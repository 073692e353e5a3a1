#!/usr/bin/env bash
# Build, push and stage the recipe image; every base is taken by digest from docker/image.lock.
#
#   docker/image.sh build TAG [BASE_REF]   build docker/Dockerfile on the lock's base (or BASE_REF@sha256:...)
#   docker/image.sh push TAG REPO[:TAG]    push TAG to REPO; prints REPO@sha256:<digest> (pinned, see below)
#   docker/image.sh content-digest IMAGE   sha256 of the layers + config without timestamps (see below)
#   docker/image.sh stage REF [DIR]        enroot import a digest reference into DIR/<repo>+sha256-<hex>.sqsh
#   docker/image.sh base                   print the lock's base reference
#   docker/image.sh context DIR            assemble the build context in DIR (RECIPE_BUILD_CONTEXT=DIR build
#                                          builds exactly that context again)
#   docker/image.sh minbase OUT.tar        Debian bookworm minbase + python3-pip (mmdebstrap), for tests
#   docker/image.sh cpu-base REPO TAR      minbase TAR -> REPO/minbase, then the CPU stand-in for miles
#                                          -> REPO/cpu-base; prints its REPO/cpu-base@sha256:<digest>
#
# Reproducibility: two builds of the same inputs add the same layer (every timestamp in it is pinned
# to SOURCE_DATE_EPOCH). The classic builder still stamps the image config with the build time and
# its throwaway container ids, so local image ids differ; `push` to a registry on 127.0.0.1 then
# pins those (docker/pin_config.py), and the pushed digest is the same for the same inputs.
# Publish elsewhere with a digest-preserving copy (skopeo copy). content-digest shows the same
# property without a registry. RECIPE_PIN_CONFIG=0 pushes the config as built.
#
# Environment: DOCKER (default docker), PYTHON (one with pip), SOURCE_DATE_EPOCH (default: the
# commit time of HEAD), RECIPE_BUILD_NO_CACHE=1, RECIPE_WHEEL_CACHE (default
# ~/.cache/recipe-bundle/wheels), SOURCE_URL (label).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DOCKER="${DOCKER:-docker}"
PY="${PYTHON:-python3}"
WHEEL_CACHE="${RECIPE_WHEEL_CACHE:-$HOME/.cache/recipe-bundle/wheels}"
export DOCKER_BUILDKIT=0  # the engine's classic builder: the same on docker.io 20.10 and newer CLIs

die() { echo "image.sh: $*" >&2; exit 1; }

epoch() { echo "${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"; }

# The CPU test base changes only with its own files: its time is their last commit, so a rebuild
# of an unchanged base gives the same tarball and hits the registry cache.
base_epoch() {
    local t
    t="$(git -C "$ROOT" log -1 --format=%ct -- docker/cpu-base 2>/dev/null || true)"
    echo "${SOURCE_DATE_EPOCH:-${t:-0}}"
}

lock_get() {  # lock_get TABLE KEY
    "$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]][sys.argv[3]])' \
        "$HERE/image.lock" "$1" "$2"
}

require_digest() {
    [[ "$1" == *@sha256:* ]] || die "$2 must be pinned by digest (NAME@sha256:...), got '$1'"
}

revision() {
    local rev
    rev="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$ROOT" status --porcelain -- runner recipes docker pyproject.toml 2>/dev/null)" ]]; then
        rev="$rev-dirty"
    fi
    echo "$rev"
}

wheels() {  # wheels LOCK DIR: the lock's wheels, each checked against its hash, cached across builds
    local lock="$1" dir="$2"
    mkdir -p "$WHEEL_CACHE" "$dir"
    "$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps --require-hashes \
        -r "$lock" -d "$WHEEL_CACHE" >&2
    # Copy exactly the locked files (the cache may hold others).
    "$PY" - "$lock" "$WHEEL_CACHE" "$dir" <<'EOF'
import hashlib, re, shutil, sys
from pathlib import Path
lock, cache, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
want = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", lock.read_text()))
found = set()
for w in sorted(cache.glob("*.whl")):
    h = hashlib.sha256(w.read_bytes()).hexdigest()
    if h in want and h not in found:
        shutil.copy2(w, out / w.name)
        found.add(h)
if want - found:
    sys.exit(f"image.sh: {len(want - found)} locked wheel(s) missing from {cache}")
EOF
}

normalize_times() { find "$1" -exec touch -h -d "@$(epoch)" {} +; }

context() {  # context DIR: the build context, plus DIR/build-args (the values build passes)
    local ctx="$1" when
    when="$(epoch)"
    rm -rf "$ctx" && mkdir -p "$ctx/bundle" "$ctx/wheels"
    cp "$HERE/Dockerfile" "$HERE/requirements.lock" "$ctx/"
    cp -p "$HERE/recipe-entrypoint.py" "$ctx/recipe-entrypoint.py"
    wheels "$HERE/requirements.lock" "$ctx/wheels"
    # Tracked and new (not ignored) files only: no __pycache__, no runs, no local inputs.
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard -- runner recipes docker/image.lock pyproject.toml \
        | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -C "$ctx/bundle" -xf -
    printf '%s\n' "SOURCE_DATE_EPOCH=$when" "REVISION=$(revision)" \
        "RECIPES_DIGEST=sha256:$(recipes_digest "$ctx")" "SOURCE_URL=${SOURCE_URL:-unknown}" \
        "BUNDLE_DIGEST=$("$PY" "$ROOT/runner/image/bundle_digest.py" context "$ctx")" >"$ctx/build-args"
    chmod -R u+rwX,go+rX,go-w "$ctx"
    SOURCE_DATE_EPOCH="$when" normalize_times "$ctx"
}

recipes_digest() {  # sha256 over "<sha256>  <path>" lines of every recipe file, sorted by path
    (cd "$1/bundle" && find recipes -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

build() {  # build TAG [BASE_REF]; RECIPE_BUILD_CONTEXT=DIR builds a context made by `context DIR`
    local tag="$1" base="${2:-$(lock_get base reference)}" ctx flags=() line
    require_digest "$base" "base image"
    if [[ "${RECIPE_BUILD_NO_CACHE:-0}" == 1 ]]; then flags+=(--no-cache); fi
    if [[ -n "${RECIPE_BUILD_CONTEXT:-}" ]]; then
        ctx="$RECIPE_BUILD_CONTEXT"
        [[ -f "$ctx/build-args" ]] || die "$ctx is not a context made by \`image.sh context\` (no build-args)"
    else
        ctx="$(mktemp -d)"
        # shellcheck disable=SC2064  # expand now: $ctx is local
        trap "rm -rf '$ctx'" RETURN
        context "$ctx"
    fi
    while IFS= read -r line; do flags+=(--build-arg "$line"); done <"$ctx/build-args"
    "$DOCKER" build --network=host --pull=false "${flags[@]}" -t "$tag" \
        --build-arg "BASE_IMAGE=$base" --build-arg "BASE_DIGEST=${base##*@}" "$ctx" >&2
    "$DOCKER" image inspect --format '{{.Id}}' "$tag"
}

push() {  # push TAG REPO[:DEST_TAG] -> REPO@sha256:... (pinned config on a local registry)
    local tag="$1" dest="$2" repo digest host epoch
    [[ "${dest##*/}" == *:* ]] || dest="$dest:latest"
    repo="${dest%:*}" host="${dest%%/*}"
    "$DOCKER" tag "$tag" "$dest"
    "$DOCKER" push "$dest" >&2
    if [[ "$host" == 127.0.0.1:* || "$host" == localhost:* ]] && [[ "${RECIPE_PIN_CONFIG:-1}" == 1 ]]; then
        # Build times out of the config: the digest then depends on the image's content only.
        epoch="$("$DOCKER" image inspect --format \
            '{{index .Config.Labels "io.recipe-bundle.source-date-epoch"}}' "$tag" 2>/dev/null || true)"
        "$PY" "$HERE/pin_config.py" "$dest" "${epoch:-$(epoch)}"
        return 0
    fi
    digest="$("$DOCKER" image inspect --format '{{join .RepoDigests "\n"}}' "$dest" | grep -F "$repo@" | head -1)"
    [[ -n "$digest" ]] || die "no digest recorded for $repo after push"
    echo "$digest"
}

registry_digest() {  # registry_digest REPO:TAG -> sha256:... if a registry on plain http has it
    local dest="$1" host path tag
    host="${dest%%/*}" path="${dest#*/}" tag="${path##*:}" path="${path%:*}"
    curl -fsSI --max-time 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$host/v2/$path/manifests/$tag" 2>/dev/null | tr -d '\r' \
        | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p' || true
}

content_digest() {  # content_digest IMAGE: sha256 over the layer diff ids and the config minus timestamps
    "$DOCKER" image inspect "$1" | "$PY" -c '
import hashlib, json, sys
img = json.load(sys.stdin)[0]
c = img["Config"]
keep = {k: c.get(k) for k in ("Env", "Entrypoint", "Cmd", "Labels", "WorkingDir", "User", "ExposedPorts")}
doc = {"layers": img["RootFS"]["Layers"], "config": keep, "os": img["Os"], "arch": img["Architecture"]}
print("sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest())'
}

stage() {  # stage REF [DIR]: `recipe image sqsh` (enroot >= 4.0, file keyed by digest, no half-written file)
    local ref="$1" dir="${2:-.}"
    require_digest "$ref" "image"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m runner.cli image sqsh nemotron3_nano --image "$ref" \
        --output-dir "$dir"
}

minbase() {  # minbase OUT.tar
    local out="$1"
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install -y mmdebstrap"
    SOURCE_DATE_EPOCH="$(base_epoch)" mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-pip \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$out.tmp" >&2
    mv -f "$out.tmp" "$out"
}

cpu_base() {  # cpu-base REPO TAR: reused from the registry when the same inputs were built before
    local repo="$1" tar="$2" ctx minbase key cached
    key="$(cat "$tar" "$HERE/cpu-base/Dockerfile" "$HERE/cpu-base/requirements.lock" | sha256sum | cut -c1-16)"
    cached="$(registry_digest "$repo/cpu-base:$key")"
    if [[ -n "$cached" ]]; then
        echo "image.sh: cpu-base for these inputs is in the registry ($key)" >&2
        echo "$repo/cpu-base@$cached"
        return 0
    fi
    "$DOCKER" import - "$repo/minbase:$key" <"$tar" >/dev/null
    minbase="$(SOURCE_DATE_EPOCH="$(base_epoch)" push "$repo/minbase:$key" "$repo/minbase:$key")"
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' RETURN
    cp "$HERE/cpu-base/Dockerfile" "$HERE/cpu-base/requirements.lock" "$ctx/"
    mkdir -p "$ctx/wheels"
    wheels "$HERE/cpu-base/requirements.lock" "$ctx/wheels"
    SOURCE_DATE_EPOCH="$(base_epoch)" normalize_times "$ctx"
    "$DOCKER" build --network=host --pull=false -t "$repo/cpu-base:$key" --build-arg "BASE_IMAGE=$minbase" \
        --build-arg "SOURCE_DATE_EPOCH=$(base_epoch)" "$ctx" >&2
    SOURCE_DATE_EPOCH="$(base_epoch)" push "$repo/cpu-base:$key" "$repo/cpu-base:$key"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    build) [[ $# -ge 1 ]] || die "usage: build TAG [BASE_REF]"; build "$@" ;;
    push) [[ $# -eq 2 ]] || die "usage: push TAG REPO[:TAG]"; push "$@" ;;
    content-digest) [[ $# -eq 1 ]] || die "usage: content-digest IMAGE"; content_digest "$1" ;;
    stage) [[ $# -ge 1 ]] || die "usage: stage REF [DIR]"; stage "$@" ;;
    base) lock_get base reference ;;
    context) [[ $# -eq 1 ]] || die "usage: context DIR"; context "$1" ;;
    minbase) [[ $# -eq 1 ]] || die "usage: minbase OUT.tar"; minbase "$1" ;;
    cpu-base) [[ $# -eq 2 ]] || die "usage: cpu-base REPO TAR"; cpu_base "$@" ;;
    *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
