#!/usr/bin/env bash
# Run chainplan on its embedded default: SQLite and a file-based Celery broker
# under ./var/, the web server and a real Celery worker.  Only Python is needed.
#   CHAINPLAN_PORT (8000), CHAINPLAN_HOST (127.0.0.1), CHAINPLAN_VAR_DIR (./var)
#   DATABASE_URL / REDIS_URL switch to PostgreSQL / Redis (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_bootstrap.sh dev

HOST="${CHAINPLAN_HOST:-127.0.0.1}"
PORT="${CHAINPLAN_PORT:-8000}"
export CHAINPLAN_VAR_DIR="${CHAINPLAN_VAR_DIR:-$PWD/var}"
export DJANGO_ALLOWED_HOSTS="${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1],$HOST}"
mkdir -p "$CHAINPLAN_VAR_DIR"

# The UI is rebuilt only when its sources changed: a hash of frontend/src, the package files and the
# build config, kept beside the build (CHAINPLAN_SKIP_UI=1 skips it altogether).
ui_hash() {
    ( cd frontend && find src public index.html package.json package-lock.json vite.config.* tsconfig*.json \
        -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum ) | sha256sum | cut -d' ' -f1
}
if [ -f frontend/package.json ] && [ -z "${CHAINPLAN_SKIP_UI:-}" ]; then
    UI_STAMP=frontend/dist/.source-hash
    if [ -f "$UI_STAMP" ] && [ "$(cat "$UI_STAMP")" = "$(ui_hash)" ]; then
        echo "== web UI up to date (frontend/dist)"
    elif command -v npm >/dev/null 2>&1; then
        echo "== building the web UI (frontend/)"
        if ( cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build ); then
            ui_hash >"$UI_STAMP"
        else
            echo "!! the web UI did not build; the API still works" >&2
        fi
    else
        echo "!! npm not found: the web UI is not built; the API still works" >&2
    fi
fi

echo "== migrating the database"
python manage.py migrate --noinput -v 0
python manage.py collectstatic --noinput -v 0
TOKEN="$(python manage.py seed_demo)"

# Three supervised children, each in its own process group (setsid) so that stopping one stops all of
# its processes (a worker's pool, uvicorn's workers). beat runs on its own, never embedded in a worker
# (an embedded beat outlives a killed worker), behind a single-beat lock (planner_app/core/beat.py).
LOG="$CHAINPLAN_VAR_DIR"
echo "== starting the Celery worker (log: $LOG/worker.log) and beat (log: $LOG/beat.log)"
setsid celery -A planner_app worker --pool prefork --concurrency "${CHAINPLAN_WORKERS:-2}" -n "chainplan@%h" \
    -l info >"$LOG/worker.log" 2>&1 &
WORKER_PID=$!
setsid python -m planner_app.core.beat --scheduler django_celery_beat.schedulers:DatabaseScheduler -l info \
    -s "$CHAINPLAN_VAR_DIR/celerybeat-schedule" >"$LOG/beat.log" 2>&1 &
BEAT_PID=$!
# uvicorn serves the API and the live dispatcher on one port (planner_app/asgi.py). Without Redis the
# dispatcher's state lives in the web process, so there must be exactly one (docs/dispatcher.md).
if [ -n "${REDIS_URL:-}${CHAINPLAN_DISPATCH_REDIS:-}" ]; then WEB_PROCS="${CHAINPLAN_WEB_PROCESSES:-2}"; else WEB_PROCS=1; fi
setsid uvicorn planner_app.asgi:application --host "$HOST" --port "$PORT" --workers "$WEB_PROCS" --no-access-log &
WEB_PID=$!

stop_all() {
    trap - EXIT INT TERM
    for pid in $WEB_PID $WORKER_PID $BEAT_PID; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 1 150); do     # up to 15 s for a warm shutdown, then no more waiting
        alive=0
        for pid in $WEB_PID $WORKER_PID $BEAT_PID; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in $WEB_PID $WORKER_PID $BEAT_PID; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
# A dead child (killed, crashed, or a second beat refused) stops everything with a line that names it.
supervise() {
    while sleep 1; do
        for entry in "web:$WEB_PID:" "worker:$WORKER_PID:$LOG/worker.log" "beat:$BEAT_PID:$LOG/beat.log"; do
            IFS=: read -r name pid log <<<"$entry"
            if ! kill -0 "$pid" 2>/dev/null; then
                wait "$pid" 2>/dev/null && code=0 || code=$?
                echo "!! chainplan: the $name (pid $pid) exited with status $code${log:+; see $log}; stopping" >&2
                [ -n "$log" ] && tail -n 5 "$log" | sed 's/^/   /' >&2
                stop_all
                exit 1
            fi
        done
    done
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

python - "$HOST" "$PORT" <<'PY' || { echo "!! the web server did not start" >&2; exit 1; }
import sys, time, urllib.error, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/api/v1/health/", timeout=3)
        break
    except urllib.error.HTTPError as exc:
        if exc.code == 503:     # up; the body says what is missing (e.g. the worker is still starting)
            break
        time.sleep(0.2)
    except OSError:
        time.sleep(0.2)
else:
    sys.exit(1)
PY
cat <<MSG

chainplan is running at http://$HOST:$PORT/
  API docs:   http://$HOST:$PORT/api/v1/docs/
  user:       demo / demo  (also /admin/)
  API token:  $TOKEN
  try:        curl -H "Authorization: Token $TOKEN" http://$HOST:$PORT/api/v1/clusters/
Press Ctrl-C to stop.
MSG
supervise
