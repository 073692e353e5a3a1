#!/usr/bin/env bash
# Debian packages the tests use for real: Slurm + munge (a 2-node cluster), the Docker engine, a
# local registry and mmdebstrap (the CPU image build), nix-bin (offline flake checks), curl; the
# tools to build enroot and pyxis from source (ci/build_vendor.sh) and enroot's run-time needs.
# Installs only what is missing; needs root (CI runs as root). Prints what it could not install.
set -euo pipefail

packages=(slurm-wlm munge docker.io docker-registry mmdebstrap nix-bin curl iproute2 procps
  gcc make libc6-dev libslurm-dev libbsd-dev makeself linux-libc-dev
  jq squashfs-tools parallel pigz zstd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "ci/system_deps.sh: not root; missing Debian packages: ${missing[*]} (tests needing them will fail)" >&2
  exit 0
fi
echo "ci/system_deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
