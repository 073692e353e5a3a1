#!/usr/bin/env bash
# The test command of the README (`just test`) and of CI (.ci/run).
# Installs what the tests need on a fresh Debian machine (system packages when root, the venv
# with every extra), then runs pytest. Tests start and stop their own services (Ray, Slurm,
# Docker engine, a local registry, a loopback Hugging Face Hub) and track them by PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ci/system_deps.sh
# enroot and pyxis from their release tarballs (for the Slurm container tests; cached, see the script)
ci/build_vendor.sh
# the real miles / Megatron-LM / Megatron-Bridge sources and a venv of their CPU needs (the upstream tests; cached)
ci/upstream_env.sh
ci/bootstrap.sh test,hub,report,tiny
# Under CI=true the real Slurm and Docker tests fail instead of skipping when they cannot run.
exec .venv/bin/python -m pytest "$@"
