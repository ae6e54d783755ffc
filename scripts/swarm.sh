#!/usr/bin/env bash
# The whole serving path in one command: the service, a private local PETALS swarm of the tiny model
# placed by an adopted plan, the dispatcher and the OpenAI-compatible gateway (docs/gateway.md).
#   bash scripts/swarm.sh [--servers N]     (default 4; runs in the foreground, Ctrl-C stops everything)
#   bash scripts/swarm.sh stop              (stops a demo running under the same CHAINPLAN_VAR_DIR)
#   CHAINPLAN_PORT (8000), CHAINPLAN_HOST (127.0.0.1), CHAINPLAN_VAR_DIR (./var) as for scripts/serve.sh;
#   CHAINPLAN_GATEWAY_PORT (the service's port + 1).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAINPLAN_VAR_DIR="${CHAINPLAN_VAR_DIR:-$PWD/var}"
PID_FILE="$CHAINPLAN_VAR_DIR/swarm-demo.pid"

if [ "${1:-}" = "stop" ]; then
    if [ ! -f "$PID_FILE" ] || ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        echo "no swarm demo is running under $CHAINPLAN_VAR_DIR"; exit 0
    fi
    pid="$(cat "$PID_FILE")"
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || { echo "stopped"; exit 0; }; sleep 0.1; done
    echo "!! the swarm demo (pid $pid) did not stop within 60 s" >&2; exit 1
fi

. scripts/_bootstrap.sh dev
bash scripts/install_petals.sh
mkdir -p "$CHAINPLAN_VAR_DIR"
# exec: Ctrl-C and SIGTERM reach the supervisor itself, which stops every part it started
exec python scripts/swarm_demo.py "$@"
