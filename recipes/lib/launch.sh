# shellcheck shell=bash
# The generic Ray lifecycle (start, readiness, submit, follow, stop) for the run scripts the runner
# renders (runner/plan/script.py) and for the sbatch job's nodes. What a launch *is* (argv, job
# environment) is rendered in Python and arrives here as literal arrays; nothing here decides it.
#
# - External commands of the sbatch job go through `recipe_cmd`, so RECIPE_DRY_RUN=1 prints them
#   (one per line, "+ " then the words quoted with printf %q) instead of running them (its tests).
# - Ray is started in a process group of its own and stopped by that group id: we end only the
#   processes we started, never anything found by name.
# - Secrets never become arguments. Ray's job driver inherits them from the environment of the
#   `ray start` that we launch.

recipe_dry_run() { [[ "${RECIPE_DRY_RUN:-0}" == "1" ]]; }

recipe_log() { printf '[recipe %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

recipe_die() {
  # recipe_die CODE MESSAGE: one line on stderr, a meaningful exit code.
  local code=$1
  shift
  printf 'recipe: error: %s\n' "$*" >&2
  exit "$code"
}

recipe_print_cmd() {
  local word
  printf '+'
  for word in "$@"; do printf ' %q' "$word"; done
  printf '\n'
}

# recipe_require_uint NAME VALUE [MIN [MAX]]: VALUE must be a plain decimal integer (no sign, no
# leading zero, at most 15 digits), at least MIN (default 0) and, if given, at most MAX. The one
# integer check of the shell side, made before any $((...)) sees the value: bash arithmetic
# evaluates what a variable holds (`a[$(cmd)]` runs cmd) and reads 010 as octal. The runner's own
# bounds on its options (64 nodes, ...) are the runner's (runner/plan/options.py), not repeated here.
recipe_require_uint() {
  local name=$1 value=$2 min=${3:-0} max=${4:-}
  local want="an integer >= $min" ok=1
  if [[ -n "$max" ]]; then want="an integer from $min to $max"; fi
  [[ "$value" =~ ^(0|[1-9][0-9]{0,14})$ ]] || ok=0
  if ((ok)) && ((value < min)); then ok=0; fi
  if ((ok)) && [[ -n "$max" ]] && ((value > max)); then ok=0; fi
  ((ok)) || recipe_die 2 "$name must be $want, got '$value'"
}

# recipe_require_int NAME...: recipe_require_uint for each named variable's value.
recipe_require_int() {
  local name
  for name in "$@"; do recipe_require_uint "$name" "${!name-}"; done
}

# recipe_tool_fd: the descriptor for tools' chatter (Ray's start-up and submit banners), or nothing.
# `recipe run` passes RECIPE_TOOL_LOG_FD, a pipe whose lines go to logs/run.log but not to the
# console; run by hand (unset, or not an open descriptor) the chatter stays on stdout as before.
recipe_tool_fd() {
  local fd=${RECIPE_TOOL_LOG_FD:-}
  [[ "$fd" =~ ^[0-9]{1,4}$ ]] || return 0
  { true >&"$fd"; } 2>/dev/null && printf '%s' "$fd"
  return 0
}

# recipe_tool CMD...: recipe_cmd for a tool whose output is chatter (see recipe_tool_fd).
recipe_tool() {
  local fd
  fd=$(recipe_tool_fd)
  if recipe_dry_run || [[ -z "$fd" ]]; then
    recipe_cmd "$@"
    return
  fi
  "$@" >&"$fd" 2>&1
}

# Run a command, or print it in dry-run mode.
recipe_cmd() {
  if recipe_dry_run; then
    recipe_print_cmd "$@"
    return 0
  fi
  "$@"
}

# JSON string escaping for the values that go into --runtime-env-json: backslash, quote, newline,
# carriage return and tab are escaped; any other control character is refused (exit 2).
recipe_json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  [[ ! "$s" =~ [[:cntrl:]] ]] || recipe_die 2 "a job environment value holds a control character: $(printf %q "$1")"
  printf '"%s"' "$s"
}

# recipe_runtime_env_json NAME... : {"env_vars": {NAME: "$NAME", ...}} for the named variables.
recipe_runtime_env_json() {
  local name sep="" key value
  printf '{"env_vars": {'
  for name in "$@"; do
    # Separate assignments: a refused value must fail this function (and the script), not vanish.
    key=$(recipe_json_str "$name") || return 2
    value=$(recipe_json_str "${!name}") || return 2
    printf '%s%s: %s' "$sep" "$key" "$value"
    sep=", "
  done
  printf '}}'
}

# recipe_nvls_default: NCCL's NVLink SHARP (NVLS) only where NVLinks exist: 1 or 0. A run's plan
# decides it in Python (runner/plan/jobenv.py); a recipe's frozen run.sh run by hand asks this.
recipe_nvls_default() {
  local topo
  topo=$(nvidia-smi topo -m 2>/dev/null) || { echo 0; return 0; }
  if grep -qE '\bNV[0-9]+\b' <<<"$topo"; then echo 1; else echo 0; fi
}

# ---- Ray ----------------------------------------------------------------------------------
# One port scheme for every launch: a run's Ray ports are a block from a base below Linux's ephemeral
# range (32768-60999, where the kernel hands out ports to outgoing connections, so a port found free
# there may be gone when Ray binds it). Node slot S (0-7) of the run uses
#   BASE, BASE+1, BASE+2             the head's GCS, dashboard and client-server ports
#   BASE+10+10*S .. +5               node-manager, object-manager, agent gRPC, agent HTTP, metrics,
#                                    runtime-env agent
#   BASE+200+200*S .. BASE+399+200*S worker ports
# A one-node run uses slot 0 only, BASE..BASE+399 (the runner picks a free BASE per run:
# runner/launch/ports.py, which reads the span from here); a Slurm job derives BASE from its job id
# (sbatch_job.sh).
# The first port of Linux's default ephemeral range: every port of the scheme stays below it. The
# runner reads this and the layout from here (runner/launch/ports.py) rather than restating them.
RECIPE_RAY_PORT_CEILING=32768
recipe_ray_ports() { # recipe_ray_ports BASE SLOT: export the ports of node slot SLOT
  recipe_require_uint "Ray node slot" "$2" 0 7
  # the slot's last worker port, BASE+399+200*SLOT, stays below the ephemeral range
  recipe_require_uint "Ray port base (node slot $2)" "$1" 1024 $((RECIPE_RAY_PORT_CEILING - 400 - 200 * $2))
  local base=$((10#$1)) slot=$((10#$2))
  local b=$((base + 10 + slot * 10))
  export RECIPE_RAY_PORT=$base RECIPE_RAY_DASHBOARD_PORT=$((base + 1)) RECIPE_RAY_CLIENT_PORT=$((base + 2))
  export RECIPE_RAY_NODE_MANAGER_PORT=$b RECIPE_RAY_OBJECT_MANAGER_PORT=$((b + 1))
  export RECIPE_RAY_AGENT_GRPC_PORT=$((b + 2)) RECIPE_RAY_AGENT_HTTP_PORT=$((b + 3))
  export RECIPE_RAY_METRICS_PORT=$((b + 4)) RECIPE_RAY_RUNTIME_ENV_AGENT_PORT=$((b + 5))
  export RECIPE_RAY_MIN_WORKER_PORT=$((base + 200 + slot * 200))
  export RECIPE_RAY_MAX_WORKER_PORT=$((base + 399 + slot * 200))
}

# Ports and the temp dir: ports already set one by one (the sbatch job's nodes, a user by hand) are
# kept; otherwise slot 0 of the scheme from RECIPE_RAY_PORT_BASE (the runner's per-run pick; 10000
# when run.sh is run by hand). Joining a cluster someone else started (RECIPE_RAY_ADDRESS), jobs go
# to its dashboard: on Ray's default port 8265 unless RECIPE_RAY_DASHBOARD_PORT says otherwise.
recipe_ray_defaults() {
  local dashboard=${RECIPE_RAY_DASHBOARD_PORT:-}
  if [[ -z "${RECIPE_RAY_PORT:-}" ]]; then recipe_ray_ports "${RECIPE_RAY_PORT_BASE:-10000}" 0; fi
  if [[ -n "${RECIPE_RAY_ADDRESS:-}" ]]; then export RECIPE_RAY_DASHBOARD_PORT=${dashboard:-8265}; fi
  : "${RECIPE_RAY_TEMP_DIR:=/tmp/recipe-ray-${RECIPE_RUN_ID:-$$}}"
  : "${RECIPE_RAY_READY_TIMEOUT:=300}"
  recipe_require_int RECIPE_RAY_PORT RECIPE_RAY_DASHBOARD_PORT RECIPE_RAY_CLIENT_PORT RECIPE_RAY_NODE_MANAGER_PORT \
    RECIPE_RAY_OBJECT_MANAGER_PORT RECIPE_RAY_AGENT_GRPC_PORT RECIPE_RAY_AGENT_HTTP_PORT RECIPE_RAY_METRICS_PORT \
    RECIPE_RAY_MIN_WORKER_PORT RECIPE_RAY_MAX_WORKER_PORT RECIPE_RAY_READY_TIMEOUT
}

# ---- who may reach this Ray ------------------------------------------------------------------
# recipe_ray_local: a Ray of one node, reachable from this host only. `ray start` rewrites a loopback
# --node-ip-address to the host's address (ray/_private/services.py resolve_ip_for_localhost), and
# its GCS, raylet, agents and client server then listen on every interface, unauthenticated. With
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray keeps 127.0.0.1 as the node's address (get_node_ip_address),
# and every server of the node binds loopback. Its job driver inherits the setting, so it connects there.
recipe_ray_local() { export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; }

# recipe_ray_token: a Ray other hosts reach (several nodes, or a cluster joined through
# RECIPE_RAY_ADDRESS) requires Ray's token authentication (Ray >= 2.52, RAY_AUTH_MODE=token): every
# node, the readiness wait, `ray job submit` and the job read the token from RAY_AUTH_TOKEN, which,
# like the other secrets, travels only through the environment (never argv, a file or a log). The
# sbatch job makes one per job (sbatch_job.sh) unless the user exported their own.
recipe_ray_token() {
  [[ -n "${RAY_AUTH_TOKEN:-}" ]] || recipe_die 2 "RAY_AUTH_TOKEN is not set: a Ray cluster of several nodes" \
    "(or one joined through RECIPE_RAY_ADDRESS) requires Ray's token authentication; export" \
    "RAY_AUTH_TOKEN (the cluster's token, e.g. from \`openssl rand -hex 32\`) in the environment"
  export RAY_AUTH_MODE=token
}

RECIPE_RAY_PID=""

# recipe_ray_start head|worker NODE_IP NUM_GPUS [HEAD_ADDRESS]
recipe_ray_start() {
  local role=$1 node_ip=$2 num_gpus=$3 head=${4:-}
  recipe_ray_defaults
  local -a args=(ray start --block --disable-usage-stats
    --node-ip-address "$node_ip" --num-gpus "$num_gpus"
    --node-manager-port "$RECIPE_RAY_NODE_MANAGER_PORT"
    --object-manager-port "$RECIPE_RAY_OBJECT_MANAGER_PORT"
    --dashboard-agent-grpc-port "$RECIPE_RAY_AGENT_GRPC_PORT"
    --dashboard-agent-listen-port "$RECIPE_RAY_AGENT_HTTP_PORT"
    --metrics-export-port "$RECIPE_RAY_METRICS_PORT"
    --min-worker-port "$RECIPE_RAY_MIN_WORKER_PORT"
    --max-worker-port "$RECIPE_RAY_MAX_WORKER_PORT")
  if [[ -n "${RECIPE_RAY_NUM_CPUS:-}" ]]; then args+=(--num-cpus "$RECIPE_RAY_NUM_CPUS"); fi
  if [[ -n "${RECIPE_RAY_RUNTIME_ENV_AGENT_PORT:-}" ]]; then
    args+=(--runtime-env-agent-port "$RECIPE_RAY_RUNTIME_ENV_AGENT_PORT")
  fi
  if [[ "$role" == head ]]; then
    args+=(--head --port "$RECIPE_RAY_PORT" --temp-dir "$RECIPE_RAY_TEMP_DIR"
      --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$RECIPE_RAY_DASHBOARD_PORT"
      --ray-client-server-port "$RECIPE_RAY_CLIENT_PORT")
  else
    # A worker keeps its own temp dir (several nodes may share one host in tests).
    args+=(--address "$head" --temp-dir "$RECIPE_RAY_TEMP_DIR")
  fi
  if recipe_dry_run; then
    recipe_print_cmd setsid "${args[@]}"
    return 0
  fi
  # Ray's session files (logs, sockets) are this run's: private, and removed when it stops Ray.
  if [[ ! -e "$RECIPE_RAY_TEMP_DIR" ]]; then
    mkdir -p "$(dirname "$RECIPE_RAY_TEMP_DIR")" && mkdir -m 700 "$RECIPE_RAY_TEMP_DIR"
    RECIPE_RAY_TEMP_OWNED=$RECIPE_RAY_TEMP_DIR
  fi
  # setsid: Ray and everything it spawns share one new process group, ended by its id.
  local fd
  fd=$(recipe_tool_fd)
  if [[ -n "$fd" ]]; then
    setsid "${args[@]}" >&"$fd" 2>&1 &
  else
    setsid "${args[@]}" &
  fi
  RECIPE_RAY_PID=$!
  recipe_log "ray $role started (process group $RECIPE_RAY_PID)"
}

RECIPE_RAY_TEMP_OWNED=""

# recipe_ray_temp_remove: the Ray temp dir this script made, once its Ray is gone (not one it found).
recipe_ray_temp_remove() {
  [[ -n "$RECIPE_RAY_TEMP_OWNED" ]] || return 0
  rm -rf -- "$RECIPE_RAY_TEMP_OWNED"
  RECIPE_RAY_TEMP_OWNED=""
}

recipe_ray_stop() {
  [[ -n "$RECIPE_RAY_PID" ]] || { recipe_ray_temp_remove; return 0; }
  local pid=$RECIPE_RAY_PID i
  RECIPE_RAY_PID=""
  # TERM to `ray start` itself first: it drains the node through the GCS and stops its children
  # (about 2 s). A TERM to the whole group at once kills the GCS under it, and `ray start` then
  # waits about 30 s for a GCS that is gone.
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  # Then whatever is left of the group (dashboard subprocesses, workers).
  kill -TERM -- "-$pid" 2>/dev/null || { recipe_log "ray stopped"; recipe_ray_temp_remove; return 0; }
  for ((i = 0; i < 20; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || { recipe_log "ray stopped"; recipe_ray_temp_remove; return 0; }
    sleep 0.5
  done
  recipe_log "ray group $pid did not stop within 30 s of TERM; sending KILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
  recipe_ray_temp_remove
}

# recipe_wait_tcp HOST PORT TIMEOUT_S: poll until HOST:PORT accepts a TCP connection (0) or time runs out (1).
recipe_wait_tcp() {
  local host=$1 port=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 1
  done
  return 1
}

# recipe_ray_node head|worker NODE_IP NUM_GPUS [HEAD_ADDRESS]: one Ray node in the foreground, for a
# launcher that runs one such step per node (Slurm). Returns when Ray exits (its exit code); on
# TERM/INT (scancel, srun forwarding a signal) stops its Ray process group first.
recipe_ray_node() {
  if [[ "$1" == worker && -n "${4:-}" ]] && ! recipe_dry_run; then
    # Workers may start before the head: poll its GCS port instead of sleeping a fixed time.
    recipe_ray_defaults
    recipe_wait_tcp "${4%:*}" "${4##*:}" "$RECIPE_RAY_READY_TIMEOUT" \
      || recipe_die 1 "ray head $4 did not accept connections within $RECIPE_RAY_READY_TIMEOUT s (from worker $2)"
  fi
  # Nodes are stopped only after the run has ended: nothing is left to drain, and Ray would
  # otherwise spend up to 30 s draining on TERM.
  export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"
  recipe_ray_start "$@"
  recipe_dry_run && return 0
  local pid=$RECIPE_RAY_PID rc=0
  trap 'recipe_ray_stop; exit 143' TERM
  trap 'recipe_ray_stop; exit 130' INT
  wait "$pid" || rc=$?
  RECIPE_RAY_PID=""
  recipe_ray_temp_remove
  recipe_log "ray $1 on $2 exited with code $rc"
  return "$rc"
}

# recipe_ray_wait ADDRESS NODES GPUS: poll until the cluster has them, bounded by RECIPE_RAY_READY_TIMEOUT.
recipe_ray_wait() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  recipe_ray_defaults
  recipe_cmd python3 "$here/ray_wait.py" --address "$1" --nodes "$2" --gpus "$3" \
    --timeout "$RECIPE_RAY_READY_TIMEOUT" ${RECIPE_RAY_EXPECT_HOSTS:+--expect-hosts "$RECIPE_RAY_EXPECT_HOSTS"} \
    ${RECIPE_RAY_PID:+--watch-pid "$RECIPE_RAY_PID"}
}

# recipe_ray_submit COMMAND...: run `ray job submit`, retrying only Ray's "No available agent to
# submit job" answer. The dashboard takes a job once the head's job agent has registered, which can
# come seconds after every node has joined (seen on a loaded 2-node test cluster); any other failure
# ends it at once, and the wait is bounded by RECIPE_RAY_READY_TIMEOUT. Output goes to the tool log.
recipe_ray_submit() {
  local fd out rc waited=0
  recipe_ray_defaults   # RECIPE_RAY_READY_TIMEOUT checked as an integer before the arithmetic below
  fd=$(recipe_tool_fd)
  while :; do
    rc=0
    out=$("$@" 2>&1) || rc=$?
    if (( rc == 0 )) || [[ "$out" != *"No available agent to submit job"* ]] ||
        (( waited >= RECIPE_RAY_READY_TIMEOUT )); then
      if [[ -n "$fd" ]]; then printf '%s\n' "$out" >&"$fd"; else printf '%s\n' "$out"; fi
      return "$rc"
    fi
    recipe_log "ray: no job agent yet; submitting again in 1 s"
    sleep 1
    waited=$((waited + 1))
  done
}

# recipe_ray_job DASHBOARD_URL JOB_ID RUNTIME_ENV_JSON -- ENTRYPOINT...
# Submits, follows the logs, and returns 0 only if Ray reports the job SUCCEEDED.
recipe_ray_job() {
  local url=$1 id=$2 env_json=$3
  shift 4
  if recipe_dry_run; then
    recipe_tool ray job submit --address "$url" --submission-id "$id" --no-wait \
      --runtime-env-json "$env_json" -- "$@"
  else
    recipe_ray_submit ray job submit --address "$url" --submission-id "$id" --no-wait \
      --runtime-env-json "$env_json" -- "$@"
  fi
  RECIPE_RAY_JOB=$id
  RECIPE_RAY_JOB_URL=$url
  recipe_cmd ray job logs --address "$url" --follow "$id" || true
  if recipe_dry_run; then
    recipe_print_cmd python3 ray_job_status.py --address "$url" "$id"
    return 0
  fi
  # The job's status word from Ray's job API (ray_job_status.py), never a search of `ray job status`'s
  # text: for a failed job that text ends with the job's own log lines, which may say "succeeded".
  local status here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  status=$(python3 "$here/ray_job_status.py" --address "$url" "$id" 2>&1 | tail -n 1) || true
  RECIPE_RAY_JOB=""
  if [[ "$status" == SUCCEEDED ]]; then
    recipe_log "ray job $id succeeded"
    return 0
  fi
  recipe_log "ray job $id did not succeed: status $status"
  return 1
}

# recipe_launch_job GPUS_PER_NODE TOTAL_GPUS RUNTIME_ENV_JSON -- ENTRYPOINT...: the tail every run
# script shares. Start a run-scoped Ray head here (or join RECIPE_RAY_ADDRESS), wait until the
# cluster has RECIPE_NODES nodes and TOTAL_GPUS GPUs, submit ENTRYPOINT as a Ray job and follow it;
# on exit or interruption, stop the job and the Ray we started.
recipe_launch_job() {
  local gpus_per_node=$1 total_gpus=$2 env_json=$3 ray_address
  shift 4
  recipe_ray_defaults
  trap recipe_cleanup EXIT
  trap 'exit 130' INT TERM
  ray_address=${RECIPE_RAY_ADDRESS:-}
  if [[ -z "$ray_address" && "$RECIPE_NODES" == 1 ]]; then
    # One node: Ray on loopback only (the job's own MASTER_ADDR is the job's business).
    recipe_ray_local
    recipe_ray_start head 127.0.0.1 "$gpus_per_node"
    ray_address="127.0.0.1:$RECIPE_RAY_PORT"
  else
    recipe_ray_token
    if [[ -z "$ray_address" ]]; then
      recipe_ray_start head "$MASTER_ADDR" "$gpus_per_node"
      ray_address="$MASTER_ADDR:$RECIPE_RAY_PORT"
    fi
  fi
  recipe_ray_wait "$ray_address" "$RECIPE_NODES" "$total_gpus"
  recipe_ray_job "http://127.0.0.1:$RECIPE_RAY_DASHBOARD_PORT" "$RECIPE_RUN_ID" "$env_json" -- "$@"
}

# On interruption: stop our job (if running), then our Ray.
recipe_cleanup() {
  if [[ -n "${RECIPE_RAY_JOB:-}" ]]; then
    ray job stop --address "$RECIPE_RAY_JOB_URL" "$RECIPE_RAY_JOB" >/dev/null 2>&1 || true
    RECIPE_RAY_JOB=""
  fi
  recipe_ray_stop
}

