#!/usr/bin/env bash
# A private Docker engine and image registry for tests and CI, started and stopped by PID.
#
#   tests/services/docker_engine.sh start    start dockerd + a registry on 127.0.0.1 (idempotent)
#   tests/services/docker_engine.sh env      print `export DOCKER_HOST=...` / `export RECIPE_REGISTRY=...`
#   tests/services/docker_engine.sh status   exit 0 if both answer
#   tests/services/docker_engine.sh stop     stop both by the PIDs recorded at start
#
# Everything lives under $RECIPE_DOCKER_STATE (default /tmp/recipe-docker): data root, exec root,
# pid files, the unix socket and logs, so it never touches a system dockerd. The engine runs with
# --iptables=false --bridge=none: containers and builds use --network=host (this sandbox has no
# bridge networking to offer). Needs Debian's docker.io and docker-registry packages.
set -euo pipefail

STATE="${RECIPE_DOCKER_STATE:-/tmp/recipe-docker}"
PORT="${RECIPE_REGISTRY_PORT:-5055}"
SOCK="$STATE/docker.sock"
DOCKERD="${DOCKERD:-dockerd}"
REGISTRY_BIN="${REGISTRY_BIN:-docker-registry}"

die() { echo "docker_engine: $*" >&2; exit 1; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

engine_up() { DOCKER_HOST="unix://$SOCK" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

registry_up() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1; }

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
    local limit="$1" what="$2"; shift 2
    local i
    for ((i = 0; i < limit * 5; i++)); do
        if "$@"; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up within ${limit}s (logs: $STATE/*.log)"
}

start_engine() {
    if alive "$STATE/dockerd.pid" && engine_up; then return 0; fi
    command -v "$DOCKERD" >/dev/null || die "dockerd not found: apt-get install -y docker.io"
    mkdir -p "$STATE/data" "$STATE/exec"
    local args=(--data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid"
                -H "unix://$SOCK" --iptables=false --ip6tables=false --bridge=none
                --log-level warn)
    if [[ -n "${RECIPE_DOCKER_STORAGE:-}" ]]; then args+=(--storage-driver "$RECIPE_DOCKER_STORAGE"); fi
    # setsid: the daemon outlives this script and is stopped by its PID, never by name.
    setsid "$DOCKERD" "${args[@]}" >"$STATE/dockerd.log" 2>&1 < /dev/null &
    wait_for 60 "dockerd" engine_up
}

start_registry() {
    if alive "$STATE/registry.pid" && registry_up; then return 0; fi
    command -v "$REGISTRY_BIN" >/dev/null || die "docker-registry not found: apt-get install -y docker-registry"
    mkdir -p "$STATE/registry"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
    setsid "$REGISTRY_BIN" serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 < /dev/null &
    echo $! >"$STATE/registry.pid"
    wait_for 30 "registry on 127.0.0.1:$PORT" registry_up
}

stop_pid() {  # stop_pid PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL that one PID
    local f="$1" pid i
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$f"
}

print_env() {
    printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
    printf 'export RECIPE_REGISTRY=%q\n' "127.0.0.1:$PORT"
}

case "${1:-}" in
    start) start_engine; start_registry; print_env ;;
    env) print_env ;;
    status) engine_up && registry_up ;;
    stop) stop_pid "$STATE/registry.pid"; stop_pid "$STATE/dockerd.pid" ;;
    *) echo "usage: $0 start|env|status|stop" >&2; exit 2 ;;
esac
