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
# Numbers from the caller and the environment are checked before launch.sh does arithmetic with them.
for v in RECIPE_RAY_READY_TIMEOUT RECIPE_RAY_PORT RECIPE_RAY_DASHBOARD_PORT RECIPE_RAY_CLIENT_PORT \
  RECIPE_RAY_NODE_MANAGER_PORT RECIPE_RAY_OBJECT_MANAGER_PORT RECIPE_RAY_AGENT_GRPC_PORT \
  RECIPE_RAY_AGENT_HTTP_PORT RECIPE_RAY_METRICS_PORT RECIPE_RAY_RUNTIME_ENV_AGENT_PORT \
  RECIPE_RAY_MIN_WORKER_PORT RECIPE_RAY_MAX_WORKER_PORT RECIPE_RAY_NUM_CPUS; do
  if [[ -n "${!v:-}" ]]; then recipe_require_uint "$v" "${!v}"; fi
done
# A Ray across hosts: every node, and the wait that connects to it, use Ray's token authentication
# (launch.sh recipe_ray_token).
case "$1" in
  head | worker)
    recipe_require_uint NUM_GPUS "$3"
    if [[ "$1" == worker && ! "${4:-}" =~ ^[^:]+:[0-9]{1,5}$ ]]; then
      recipe_die 2 "ray_node.sh worker: HEAD_ADDRESS must be HOST:PORT, got '${4:-}'"
    fi
    recipe_ray_token
    recipe_ray_node "$@"
    ;;
  wait)
    [[ $# -eq 4 ]] || recipe_die 2 "usage: ray_node.sh wait ADDRESS NODES TOTAL_GPUS"
    recipe_require_uint NODES "$3" 1
    recipe_require_uint TOTAL_GPUS "$4"
    recipe_ray_token
    recipe_ray_wait "$2" "$3" "$4"
    ;;
  *) recipe_die 2 "ray_node.sh: first argument must be head, worker or wait, got '$1'" ;;
esac
