#!/usr/bin/env bash
# Run the whole test suite: pytest over tests/ (solver, probe and service
# tests; the service end-to-end tests use PostgreSQL on 127.0.0.1:5432 and
# Redis on 127.0.0.1:6379, skipped when absent unless CI=true), then the web
# UI's unit tests when frontend/ exists.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_bootstrap.sh dev,probe

# keep the tests' embedded broker files and secret key out of ./var
export CHAINPLAN_VAR_DIR="${CHAINPLAN_VAR_DIR:-$(mktemp -d)}"
status=0
python -m pytest tests "$@" || status=$?

if [ -f frontend/package.json ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "== frontend unit tests"
        ( cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test ) || status=$?
    elif [ "${CI:-}" = "true" ]; then
        echo "!! npm is missing: cannot run the frontend tests" >&2
        status=1
    else
        echo "!! npm not found: skipping the frontend tests" >&2
    fi
fi
exit $status
