#!/usr/bin/env bash
# Build enroot and pyxis from their source releases for the Slurm container tests.
#
#   ci/build_vendor.sh [SOURCES_DIR]   (default: the shared/vendor directory beside the checkout)
#
# Neither is packaged by Debian or on PyPI, so CI builds them from the release tarballs kept
# beside the checkout (never copied into the repo). SHA256SUMS there is checked first. The
# result goes to $RECIPE_VENDOR_DIR (default /opt/recipe-vendor), outside the repo:
#
#   $RECIPE_VENDOR_DIR/enroot -> enroot-<version>-<sha12>/   (bin/enroot, lib/enroot, etc/enroot)
#   $RECIPE_VENDOR_DIR/pyxis  -> pyxis-<version>-<sha12>/    (spank_pyxis.so)
#
# and, as root, /usr/local/bin/enroot: this machine's enroot, a launcher of the build above that
# applies a test cluster node's configuration when it runs on one (see tests/services/slurm_cluster.sh; pyxis
# runs enroot from /usr/local/bin:/usr/bin:/bin in its epilog, so it must be found there).
#
# Idempotent: a build whose directory holds a .built stamp with the same tarball hash is kept.
# Builds go to a temporary directory and are renamed into place only when complete.
#
# How they build on Debian 12 (glibc 2.36, Slurm 22.05):
# - pyxis: plain `make` against libslurm-dev's <slurm/spank.h>.
# - enroot: the release tarball has empty submodules (musl, libbsd, makeself, linux-headers).
#   FORCE_GLIBC=1 builds its helpers against glibc instead of musl; Debian's makeself and kernel
#   headers stand in for the others; strlcpy/strlcat/closefrom/fparseln (which glibc 2.36 lacks)
#   come from Debian's libbsd-dev in its "overlay" mode. The `enroot` script hard-codes its
#   library and config directories from the prefix, so build and install use the same prefix.
# Needs: gcc make libslurm-dev libbsd-dev makeself linux-libc-dev (ci/system_deps.sh installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${1:-$ROOT/../shared/vendor}
DEST=${RECIPE_VENDOR_DIR:-/opt/recipe-vendor}

log() { printf '[build_vendor] %s\n' "$*" >&2; }
die() { printf 'build_vendor: error: %s\n' "$*" >&2; exit 1; }

if [[ ! -d "$SRC" ]]; then
  # CI always has them; elsewhere the Slurm container tests then skip (and fail under CI=true).
  [[ "${CI:-}" == true ]] && die "no source directory $SRC (expected enroot-*.tar.gz, pyxis-*.tar.gz, SHA256SUMS)"
  log "no source directory $SRC: enroot and pyxis not built"
  exit 0
fi
[[ -f "$SRC/SHA256SUMS" ]] || die "$SRC/SHA256SUMS not found"
(cd "$SRC" && sha256sum --quiet --strict -c SHA256SUMS) || die "checksums in $SRC/SHA256SUMS do not match"

missing=()
for tool in gcc make makeself; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[[ -f /usr/include/slurm/spank.h ]] || missing+=(libslurm-dev)
[[ -f /usr/include/bsd/string.h ]] || missing+=(libbsd-dev)
((${#missing[@]} == 0)) || die "missing build tools: ${missing[*]} (run ci/system_deps.sh as root)"

mkdir -p "$DEST"

tarball() { # tarball NAME: the one NAME-*.tar.gz listed in SHA256SUMS
  local f
  f=$(awk -v n="$1" '$2 ~ "^" n "-[0-9.]+\\.tar\\.gz$" { print $2 }' "$SRC/SHA256SUMS")
  [[ -n "$f" && $(wc -l <<<"$f") -eq 1 ]] || die "expected exactly one $1-VERSION.tar.gz in $SRC/SHA256SUMS"
  printf '%s\n' "$f"
}

# build NAME BUILD_FUNCTION: unpack NAME's tarball, build and install into DEST/NAME-VERSION-SHA12
build() {
  local name=$1 fn=$2 file sha version final tmp work
  file=$(tarball "$name")
  sha=$(awk -v f="$file" '$2 == f { print $1 }' "$SRC/SHA256SUMS")
  version=${file#"$name"-}
  version=${version%.tar.gz}
  final=$DEST/$name-$version-${sha:0:12}
  if [[ -f "$final/.built" && "$(<"$final/.built")" == "$sha" ]]; then
    log "$name $version already built in $final"
  else
    tmp=$(mktemp -d "$DEST/.$name-build.XXXXXX")
    chmod 755 "$tmp" # mktemp makes it 0700; slurmd and job users read it
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: these are this build's own directories
    trap "rm -rf '$work' '$tmp'" EXIT
    tar -xzf "$SRC/$file" -C "$work"
    log "building $name $version into $final"
    # The prefix is the final path: enroot's script names its library directory by it.
    (cd "$work/$name-$version" && "$fn" "$final" "$tmp")
    printf '%s\n' "$sha" >"$tmp/.built"
    rm -rf "$final"
    mv "$tmp" "$final"
    rm -rf "$work"
    trap - EXIT
  fi
  ln -sfn "$(basename "$final")" "$DEST/$name.tmp" && mv -T "$DEST/$name.tmp" "$DEST/$name"
}

build_enroot() { # in the source tree: build_enroot PREFIX STAGING
  local prefix=$1 staging=$2
  mkdir -p deps/dist/makeself/bin deps/dist/libbsd/include
  install -m 755 "$(command -v makeself)" deps/dist/makeself/bin/enroot-makeself
  cp -r /usr/include/bsd deps/dist/libbsd/include/
  # `-o deps`: the submodule step has nothing to build (the stand-ins are in place). CPPFLAGS
  # through the environment: the Makefile appends it to its own flags (a command-line value would
  # replace them).
  CPPFLAGS="-DLIBBSD_OVERLAY -isystem $PWD/deps/dist/libbsd/include/bsd" \
    make -s -o deps FORCE_GLIBC=1 prefix="$prefix" all >/dev/null
  CPPFLAGS="-DLIBBSD_OVERLAY -isystem $PWD/deps/dist/libbsd/include/bsd" \
    make -s -o deps FORCE_GLIBC=1 prefix="$prefix" DESTDIR="$staging/.destdir" install >/dev/null
  # DESTDIR staged the tree under $staging/.destdir$prefix: lift it to the staging root.
  (shopt -s dotglob && mv "$staging/.destdir$prefix"/* "$staging/")
  rm -rf "$staging/.destdir"
  "$staging/bin/enroot" version >/dev/null 2>&1 || true # sanity only: its libdir is the final path
}

build_pyxis() { # in the source tree: build_pyxis PREFIX STAGING
  local staging=$2
  make -s >/dev/null
  install -m 644 spank_pyxis.so "$staging/spank_pyxis.so"
}

build enroot build_enroot
build pyxis build_pyxis
install_launcher() {
  local target=/usr/local/bin/enroot tmp
  if [[ -e "$target" ]] && ! grep -q 'recipe-bundle enroot launcher' "$target"; then
    log "$target exists and is not ours; leaving it"
    return 0
  fi
  tmp=$(mktemp /usr/local/bin/.enroot.XXXXXX)
  cat >"$tmp" <<EOF
#!/bin/bash
# recipe-bundle enroot launcher (ci/build_vendor.sh): enroot $DEST/enroot, with the configuration of
# the test-cluster node it runs on: \$RECIPE_ENROOT_NODE_ENV, or the nodes/\$SLURMD_NODENAME/enroot.env
# beside \$SLURM_CONF (tests/services/slurm_cluster.sh). Only ENROOT_* lines are read from it.
set -euo pipefail
env_file=\${RECIPE_ENROOT_NODE_ENV:-}
if [[ -z "\$env_file" && -n "\${SLURM_CONF:-}" && -n "\${SLURMD_NODENAME:-}" ]]; then
  env_file=\$(dirname "\$SLURM_CONF")/nodes/\$SLURMD_NODENAME/enroot.env
fi
if [[ -n "\$env_file" && -f "\$env_file" ]]; then
  while IFS='=' read -r key value; do
    if [[ "\$key" =~ ^ENROOT_[A-Z_]+\$ ]]; then export "\$key=\$value"; fi
  done <"\$env_file"
fi
unset RECIPE_ENROOT_NODE_ENV
export PATH=$DEST/enroot/bin:\$PATH
exec $DEST/enroot/bin/enroot "\$@"
EOF
  chmod 755 "$tmp"
  mv "$tmp" "$target"
}

if [[ $(id -u) -eq 0 ]]; then install_launcher; else log "not root: /usr/local/bin/enroot not installed"; fi
"$DEST/enroot/bin/enroot" version >/dev/null || die "the built enroot does not run: $DEST/enroot/bin/enroot version"
log "enroot $("$DEST/enroot/bin/enroot" version) in $DEST/enroot; pyxis in $DEST/pyxis/spank_pyxis.so"
