# Sourced by serve.sh and test.sh: the virtual environment with chainplan installed.
# Usage: . scripts/_bootstrap.sh "<pip extras>"   (run from the repository root)
set -euo pipefail
extras="${1:-dev}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed or new extras are asked for.
stamp=".venv/.chainplan-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== pip install -e .[$extras]"
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
