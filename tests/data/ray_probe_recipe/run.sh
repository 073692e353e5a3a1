#!/usr/bin/env bash
# Multi-node test recipe: joins (or starts) Ray through the shared launch helpers, waits for
# RECIPE_NODES nodes, then submits a Ray job that runs one task pinned to each node and writes
# a metric event with the number of distinct nodes reached.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null  # (copied next to recipes/lib by the tests)
source "$here/../lib/launch.sh"
: "${RECIPE_RUN_DIR:?}" "${RECIPE_NODES:=1}" "${RECIPE_GPUS_PER_NODE:=0}" "${RECIPE_RUN_ID:=ray_probe-$$}"
: "${RECIPE_RAY_ADDRESS:=}"

recipe_ray_defaults
recipe_cmd mkdir -p "$RECIPE_RUN_DIR/events"
trap recipe_cleanup EXIT
trap 'exit 130' INT TERM

ray_address=$RECIPE_RAY_ADDRESS
if [[ -z "$ray_address" ]]; then
  recipe_ray_start head 127.0.0.1 "$RECIPE_GPUS_PER_NODE"
  ray_address="127.0.0.1:$RECIPE_RAY_PORT"
fi
# PROBE_HOLD_S keeps the run going that long before the job (tests interrupt it meanwhile).
if [[ -n "${PROBE_HOLD_S:-}" ]]; then
  recipe_log "probe: holding ${PROBE_HOLD_S} s"
  sleep "$PROBE_HOLD_S"
fi
recipe_ray_wait "$ray_address" "$RECIPE_NODES" "$((RECIPE_NODES * RECIPE_GPUS_PER_NODE))"
recipe_ray_job "http://127.0.0.1:$RECIPE_RAY_DASHBOARD_PORT" "$RECIPE_RUN_ID" '{"env_vars": {}}' -- \
  python3 "$here/probe.py" "$RECIPE_RUN_DIR/events/probe.jsonl"
