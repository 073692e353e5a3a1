# shellcheck shell=bash
# shellcheck disable=SC2154,SC2153 # the parameters below are assigned by the generated script that sources this file
# The job that `recipe sbatch` submits (and `recipe run --backend slurm` runs inside an allocation).
#
# This file is static: the script sbatch runs is a generated header (#SBATCH lines) and one block of
# shell-quoted assignments, then `source` of this file. No value is ever pasted into shell code.
# The parameters it reads:
#   RECIPE NODES GPUS_PER_NODE READY_TIMEOUT   recipe name; allocation shape; seconds for Ray to come up
#   RUNTIME                pyxis: every step runs in IMAGE; none: the software installed on the nodes
#   IMAGE IMAGE_REF        pyxis --container-image (a staged .sqsh or REGISTRY#REPO@sha256:...); the
#                          pinned reference it stands for (exported as RECIPE_IMAGE: `recipe doctor`)
#   BUNDLE                 the recipe bundle (recipes/, runner/) as the steps see it
#   RUNS_DIR INPUTS_DIR OUTPUT_DIR   mounted into the steps' containers
#   RUN_DIR                the run directory `recipe sbatch --submit` or `recipe run --backend slurm`
#                          froze the plan into (plan.json, run.sh, run.json); the head node runs
#                          `recipe exec RUN_DIR` on it, which takes every option from plan.json
#   RECIPE_CMD=()          how a step calls `recipe`
#   EXTRA_MOUNTS=()        more SRC:DST[:FLAGS] for pyxis
#
# What happens, in order:
#   0. pyxis: the job's container is created on every node, one step per node (the image import
#      happens here, and a node whose import fails is named); with several nodes, each proves it
#      shares the run directory with the head (a token the head must read back);
#   1. one Ray node per allocated node, each as its own job step (head on the first node);
#   2. wait until every node and GPU has joined Ray (bounded; names a node that never joins);
#   3. `recipe exec RUN_DIR` on the head node, joining that Ray cluster;
#   4. if any node's step ends before the run does, fail at once naming that node;
#   5. on exit, error or scancel: stop the run, then every Ray step, then remove the containers.
# Secrets (WANDB_API_KEY, HF_TOKEN, the job's RAY_AUTH_TOKEN, ...) are in no file: sbatch exports the
# environment it is called from to the job, srun passes it on to each step, and pyxis into the container.

here_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=launch.sh
source "$here_lib/launch.sh"

die() { recipe_die 1 "$@"; }
log() { recipe_log "$@"; }

# ---- the parameters, checked before any arithmetic uses them ------------------------------
# (their upper bounds are the runner's, which wrote them: runner/plan/options.py MAX_NODES, ...)
recipe_require_uint NODES "$NODES" 1
recipe_require_uint GPUS_PER_NODE "$GPUS_PER_NODE"
recipe_require_uint READY_TIMEOUT "$READY_TIMEOUT" 1 86400
[[ "$RUNTIME" == pyxis || "$RUNTIME" == none ]] || recipe_die 2 "RUNTIME must be pyxis or none, got '$RUNTIME'"
export RECIPE_RAY_READY_TIMEOUT=${RECIPE_RAY_READY_TIMEOUT:-$READY_TIMEOUT}
recipe_require_uint RECIPE_RAY_READY_TIMEOUT "$RECIPE_RAY_READY_TIMEOUT" 1 86400
if [[ -n "${IMAGE_REF:-}" && "$IMAGE_REF" != none ]]; then export RECIPE_IMAGE=$IMAGE_REF; fi

# ---- job-unique names, ports and temp dir --------------------------------------------------
JOB=${SLURM_JOB_ID:-}
[[ -n "$JOB" ]] || die "SLURM_JOB_ID is unset: run this script with sbatch, or inside an allocation"
recipe_require_uint SLURM_JOB_ID "$JOB" 1 999999999
# pyxis reuses a container that already has this name: make it unique to the job.
CONTAINER_NAME="recipe-$RECIPE-$JOB"
RAY_TMP="/tmp/recipe-ray-$JOB"
# Each job gets its own block of 2000 ports below the ephemeral range, and node i slot i % 8 of the
# one port scheme inside it (launch.sh recipe_ray_ports), so several nodes on one host never collide.
PORT_BASE=$((10000 + (JOB % 10) * 2000))

node_env() { # node_env INDEX: the Ray ports and temp dir of the INDEX-th node
  recipe_ray_ports "$PORT_BASE" "$(($1 % 8))"
  export RECIPE_RAY_TEMP_DIR="$RAY_TMP/node$1"
}
node_env 0 # the head's ports (RECIPE_RAY_PORT, ...) for what follows

# Ray's token authentication on every node and client (launch.sh recipe_ray_token): the user's
# RAY_AUTH_TOKEN, else one made here for this job. Only ever in the environment, which srun passes to
# each step (and pyxis into the container); runner/secrets.py scrubs it from the run's logs.
if [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
  RAY_AUTH_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  [[ "$RAY_AUTH_TOKEN" =~ ^[0-9a-f]{64}$ ]] || die "could not make a Ray token from /dev/urandom"
fi
export RAY_AUTH_TOKEN RAY_AUTH_MODE=token

node_ip() { # node_ip HOST: the address Slurm reaches HOST at (its NodeAddr), as IPv4
  local addr
  addr=$(scontrol show node "$1" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
  if [[ ! "$addr" =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then
    addr=$(getent ahostsv4 "$addr" | awk 'NR == 1 { print $1 }')
  fi
  [[ -n "$addr" ]] || die "cannot find an IPv4 address for node $1"
  printf '%s\n' "$addr"
}

expand_counts() { # "72(x2),36" -> 72 72 36: SLURM_JOB_CPUS_PER_NODE's compressed form, one per node
  local part n r
  local -a parts
  IFS=, read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" =~ ^([0-9]{1,6})\(x([0-9]{1,6})\)$ ]]; then
      n=${BASH_REMATCH[1]} r=${BASH_REMATCH[2]}
    elif [[ "$part" =~ ^[0-9]{1,6}$ ]]; then
      n=$part r=1
    else
      die "SLURM_JOB_CPUS_PER_NODE: cannot read '$part' (expected N or N(xR))"
    fi
    for ((; r > 0; r--)); do printf '%s\n' "$n"; done
  done
}

mapfile -t HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
mapfile -t CPUS < <(expand_counts "${SLURM_JOB_CPUS_PER_NODE:-1}")
((${#HOSTS[@]} == NODES)) || die "allocation has ${#HOSTS[@]} node(s), this script was rendered for $NODES"
IPS=()
EXPECT=()
declare -A CPUS_OF
for i in "${!HOSTS[@]}"; do
  IPS+=("$(node_ip "${HOSTS[i]}")")
  EXPECT+=("${HOSTS[i]}=${IPS[i]}")
  CPUS_OF[${HOSTS[i]}]=${CPUS[i]:-1}
done
HEAD=${HOSTS[0]}
RAY_ADDRESS="${IPS[0]}:$RECIPE_RAY_PORT"
export RECIPE_RAY_EXPECT_HOSTS
RECIPE_RAY_EXPECT_HOSTS=$(IFS=,; echo "${EXPECT[*]}")

# ---- how every step is started -------------------------------------------------------------
CONTAINER=()
if [[ "$RUNTIME" == pyxis ]]; then
  mounts="$RUNS_DIR:$RUNS_DIR,$INPUTS_DIR:$INPUTS_DIR:ro,$OUTPUT_DIR:$OUTPUT_DIR"
  for m in "${EXTRA_MOUNTS[@]}"; do mounts+=",$m"; done
  # Writable: Ray keeps its sockets and logs under /tmp inside the container. A second step on a
  # node joins the running container of the first (pyxis finds it by name). Remap root: the image is
  # built to run as root with HOME=/root (everything of miles' lives under /root); without the flag
  # pyxis 0.24 leaves it to enroot's ENROOT_REMAP_ROOT, default no, and a non-root user would run as
  # themself with their own HOME. It grants nothing on the host (a user namespace; files written to
  # the mounts are the user's), and is a no-op for root (tests/test_pyxis_nonroot.py).
  CONTAINER=(--container-image="$IMAGE" --container-name="$CONTAINER_NAME"
    --container-mounts="$mounts" --no-container-mount-home --container-writable --container-remap-root)
fi

step() { # step HOST NAME COMMAND... &: one task on HOST with all its CPUs, sharing the node with the other steps.
  # Always started in the background: exec makes the background PID srun's own, so a signal to it
  # reaches srun (which forwards it to the task).
  local host=$1 name=$2
  shift 2
  exec srun --nodes=1 --ntasks=1 --nodelist="$host" --overlap --job-name="$name" \
    --cpus-per-task="${CPUS_OF[$host]}" "${CONTAINER[@]}" "$@"
}

STEP_PIDS=()
STEP_NODES=()
RUN_PID=""
CONTAINERS_MADE=0

stop_group() { # stop_group NAME_REGEX PID...: TERM those steps, wait up to 30 s, then have srun kill them
  local re=$1 id name i pid
  shift
  local -a pids=()
  for pid in "$@"; do [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && pids+=("$pid"); done
  ((${#pids[@]} > 0)) || return 0
  # scancel --signal reaches the step's own processes (srun would turn a TERM into a SIGKILL).
  while read -r id name; do
    if [[ "$name" =~ ^($re)$ ]]; then scancel --quiet --signal=TERM "$id" 2>/dev/null || true; fi
  done < <(squeue -h -s -j "$JOB" -o '%i %j' 2>/dev/null)
  for ((i = 0; i < 60; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.5
  done
  log "steps $re still running 30 s after TERM; making srun kill them"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  sleep 10
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

stop_steps() {
  # In order: the run (it stops its Ray job), the workers, then the head, whose GCS the workers
  # report their shutdown to.
  stop_group 'recipe-run|ray-wait' "${RUN_PID:-}"
  stop_group 'ray-worker-.*' "${STEP_PIDS[@]:1}"
  stop_group 'ray-head-.*' "${STEP_PIDS[0]:-}"
}

# Removes the job's container on one node: pyxis names it pyxis_NAME (its default
# container_scope=global, where it stays after the job) or pyxis_JOBID_NAME (container_scope=job,
# where pyxis' own epilog removes it, also after scancel, when no step can run any more).
# shellcheck disable=SC2016 # expanded by the step's bash, with the names as arguments
REMOVE_CONTAINERS='command -v enroot >/dev/null || { echo "enroot not on PATH: cannot remove $*" >&2; exit 1; }
for n in "$@"; do if enroot list | grep -qxF "$n"; then enroot remove -f "$n" >/dev/null || exit 1; fi; done'

remove_containers() {
  ((CONTAINERS_MADE)) || return 0
  local h
  local -a pids=()
  for h in "${HOSTS[@]}"; do
    srun --nodes=1 --ntasks=1 --nodelist="$h" --overlap --job-name="container-remove-$h" \
      bash -c "$REMOVE_CONTAINERS" remove "pyxis_$CONTAINER_NAME" "pyxis_${JOB}_$CONTAINER_NAME" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[i]}" || log "node ${HOSTS[i]}: could not remove container $CONTAINER_NAME"
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_steps
  remove_containers
  log "job $JOB finished with exit code $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
# `recipe sbatch --time T` asks Slurm for USR1 (to this script only) --stop-before seconds before the
# wall: stop the run as scancel would (cleanup TERMs its step: `recipe exec` stops the trainer, which
# saves a checkpoint, and records the run interrupted), so that `recipe resume` can continue it.
trap 'log "job $JOB: its time limit is near: stopping the run, which saves a checkpoint"; exit 143' USR1
trap 'exit 130' INT

check_nodes() { # fail fast: every node's Ray step must outlive the run
  local i rc
  for i in "${!STEP_PIDS[@]}"; do
    if ! kill -0 "${STEP_PIDS[i]}" 2>/dev/null; then
      rc=0
      wait "${STEP_PIDS[i]}" || rc=$?
      unset 'STEP_PIDS[i]'
      die "node ${STEP_NODES[i]}: its Ray step ended (exit code $rc) before the run finished; failing the job"
    fi
  done
}

monitored() { # monitored COMMAND...: run COMMAND in the background, watching the nodes meanwhile
  "$@" &
  RUN_PID=$!
  while kill -0 "$RUN_PID" 2>/dev/null; do
    check_nodes
    sleep 1
  done
  local rc=0
  wait "$RUN_PID" || rc=$?
  RUN_PID=""
  return "$rc"
}

mkdir -p "$RUNS_DIR" "$OUTPUT_DIR"
log "job $JOB: recipe $RECIPE on ${HOSTS[*]} (head $HEAD, Ray at $RAY_ADDRESS), run dir $RUN_DIR"

# ---- 0. every node: its container, and proof that the run directory is shared ---------------
# pyxis: the job's container is created here, once per node (the image import happens here).
# Several nodes: ranks on other nodes write their events into the run directory and the gate
# reads them on the head, so each node writes a token beside the run directory that this node must
# then see (a node-local --runs-dir is caught here, not after the run as a gate with no metrics).
SHARE_DIR="$(dirname "$RUN_DIR")/.recipe-share-$JOB"
# shellcheck disable=SC2016 # expanded by the step's sh, with the values as arguments
WRITE_TOKEN='mkdir -p "$1" && printf "%s\n" "$2" >"$1/$2"'
if [[ "$RUNTIME" == pyxis ]] || ((NODES > 1)); then
  CONTAINERS_MADE=$([[ "$RUNTIME" == pyxis ]] && echo 1 || echo 0)
  mkdir -p "$SHARE_DIR"
  pids=()
  for h in "${HOSTS[@]}"; do
    step "$h" "node-check-$h" sh -c "$WRITE_TOKEN" token "$SHARE_DIR" "$h" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    if ((rc != 0)) && [[ "$RUNTIME" == pyxis ]]; then
      die "node ${HOSTS[i]}: creating the container from $IMAGE failed (exit code $rc; see above)"
    fi
    ((rc == 0)) || die "node ${HOSTS[i]}: its first step failed (exit code $rc; see above)"
  done
  for h in "${HOSTS[@]}"; do
    if [[ "$(cat "$SHARE_DIR/$h" 2>/dev/null)" != "$h" ]]; then
      rm -rf "$SHARE_DIR"
      recipe_die 3 "node $h: wrote $SHARE_DIR/$h, which $HEAD cannot read: the run directory's parent" \
        "$(dirname "$RUN_DIR") is not shared by all nodes (ranks there write their events into the run" \
        "directory, the gate reads them on $HEAD); put --runs-dir on a filesystem every node mounts"
    fi
  done
  rm -rf "$SHARE_DIR"
  if [[ "$RUNTIME" == pyxis ]]; then log "containers $CONTAINER_NAME ready on ${HOSTS[*]}"; fi
  log "run directory shared by ${HOSTS[*]}"
fi

# ---- 1. one Ray node per allocated node -----------------------------------------------------
for i in "${!HOSTS[@]}"; do
  node_env "$i"
  if ((i == 0)); then
    step "${HOSTS[i]}" "ray-head-${HOSTS[i]}" bash "$BUNDLE/recipes/lib/ray_node.sh" \
      head "${IPS[i]}" "$GPUS_PER_NODE" &
  else
    step "${HOSTS[i]}" "ray-worker-${HOSTS[i]}" bash "$BUNDLE/recipes/lib/ray_node.sh" \
      worker "${IPS[i]}" "$GPUS_PER_NODE" "$RAY_ADDRESS" &
  fi
  STEP_PIDS[i]=$!
  STEP_NODES[i]="${HOSTS[i]} (${IPS[i]})"
done
node_env 0 # the head's ports, for the steps below

# ---- 2. wait until every node and GPU has joined --------------------------------------------
# First the head's GCS port, from here (the head node's host network): once Ray listens, the head's
# container is running, and pyxis then starts the steps below on the head node inside that same
# container (its /tmp holds Ray's sockets). Started earlier, a step would get a fresh container.
deadline=$((SECONDS + RECIPE_RAY_READY_TIMEOUT))
until (exec 3<>"/dev/tcp/${IPS[0]}/$RECIPE_RAY_PORT") 2>/dev/null; do
  check_nodes
  ((SECONDS < deadline)) || die "Ray head on $HEAD did not listen on ${IPS[0]}:$RECIPE_RAY_PORT within $RECIPE_RAY_READY_TIMEOUT s"
  sleep 0.5
done
monitored step "$HEAD" ray-wait bash "$BUNDLE/recipes/lib/ray_node.sh" \
  wait "$RAY_ADDRESS" "$NODES" "$((NODES * GPUS_PER_NODE))" \
  || die "Ray did not come up on all $NODES node(s) within $RECIPE_RAY_READY_TIMEOUT s (see above)"
log "ray ready on ${HOSTS[*]}"

# ---- 3. the recipe, on the head node, joining this Ray cluster -------------------------------
export RECIPE_RAY_ADDRESS=$RAY_ADDRESS
rc=0
monitored step "$HEAD" recipe-run "${RECIPE_CMD[@]}" exec "$RUN_DIR" || rc=$?
if ((rc != 0)); then die "recipe run exited with code $rc; run record in $RUN_DIR"; fi
log "recipe run succeeded; run record in $RUN_DIR"
