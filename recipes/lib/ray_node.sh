#!/usr/bin/env bash
# One step of a multi-node launch (run by the generated sbatch script, one per node, in the container):
#
#   ray_node.sh head   NODE_IP NUM_GPUS               Ray head, in the foreground
#   ray_node.sh worker NODE_IP NUM_GPUS HEAD_ADDRESS  Ray worker joining HEAD_ADDRESS, in the foreground
#   ray_node.sh wait   ADDRESS NODES TOTAL_GPUS       poll until every node and GPU has joined (bounded
#                                                     by RECIPE_RAY_READY_TIMEOUT; names missing nodes
#                                                     from RECIPE_RAY_EXPECT_HOSTS)
#
# Ports and the temp dir come from RECIPE_RAY_* (the sbatch script chooses them per job and node).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=launch.sh
source "$here/launch.sh"

[[ $# -ge 3 ]] || recipe_die 2 "usage: ray_node.sh head|worker|wait ..."
case "$1" in
  head | worker) recipe_ray_node "$@" ;;
  wait) recipe_ray_wait "$2" "$3" "$4" ;;
  *) recipe_die 2 "ray_node.sh: first argument must be head, worker or wait, got '$1'" ;;
esac
