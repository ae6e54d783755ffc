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

if [ -f frontend/package.json ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "== building the web UI (frontend/)"
        ( cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build ) \
            || echo "!! the web UI did not build; the API still works" >&2
    else
        echo "!! npm not found: the web UI is not built; the API still works" >&2
    fi
fi

echo "== migrating the database"
python manage.py migrate --noinput -v 0
python manage.py collectstatic --noinput -v 0
TOKEN="$(python manage.py seed_demo)"

# -B: the worker embeds beat (the job sweep and re-planning schedules, read from the database)
echo "== starting the Celery worker with beat (log: $CHAINPLAN_VAR_DIR/worker.log)"
celery -A planner_app worker -B --scheduler django_celery_beat.schedulers:DatabaseScheduler --pool prefork \
    --concurrency "${CHAINPLAN_WORKERS:-2}" -n "chainplan@%h" -l info >"$CHAINPLAN_VAR_DIR/worker.log" 2>&1 &
WORKER_PID=$!
# uvicorn serves the API and the live dispatcher on one port (planner_app/asgi.py). Without Redis the
# dispatcher's state lives in the web process, so there must be exactly one (docs/dispatcher.md).
if [ -n "${REDIS_URL:-}${CHAINPLAN_DISPATCH_REDIS:-}" ]; then WEB_PROCS="${CHAINPLAN_WEB_PROCESSES:-2}"; else WEB_PROCS=1; fi
uvicorn planner_app.asgi:application --host "$HOST" --port "$PORT" --workers "$WEB_PROCS" --no-access-log &
WEB_PID=$!
trap 'kill $WEB_PID $WORKER_PID 2>/dev/null; wait' EXIT INT TERM

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
wait $WEB_PID
