#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and RPC server once per machine (CPU, with RPC), from the
# llama.cpp that the `llama-cpp-python` source package vendors: the package index is the only
# thing reached (no git clone, no web UI download).  About 6 minutes on 2 cores, then cached.
#
# Idempotent: a stamp beside the binaries records the recipe, and a binary that no longer runs (its
# shared libraries live in build/) is rebuilt; otherwise rerunning is a no-op (well under a second).
# HOME_DIR/src links the source built, whose convert_hf_to_gguf.py `python -m serving.llama_cpp.gguf` runs.
# Usage: bash scripts/llama_cpp.sh [--force]     prints the directory holding the binaries
#   LLAMA_CPP_HOME overrides where it builds (default ~/.cache/chainplan/llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPE=2
VERSION=0.3.36          # llama-cpp-python release whose vendored llama.cpp we build
HOME_DIR="${LLAMA_CPP_HOME:-$HOME/.cache/chainplan/llama.cpp}"
BIN="$HOME_DIR/bin"
STAMP="$BIN/.chainplan-llama-cpp-$VERSION-recipe-$RECIPE"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--force" ]; then rm -rf "$HOME_DIR"; fi
if [ -f "$STAMP" ] && [ -e "$HOME_DIR/src/convert_hf_to_gguf.py" ] && "$BIN/llama-server" --version >/dev/null 2>&1 \
        && [ -n "$(ls "$BIN" | grep -E '^(ggml-)?rpc-server$')" ]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$HOME_DIR"
src="$HOME_DIR/llama_cpp_python-$VERSION"
if [ ! -d "$src/vendor/llama.cpp" ]; then
    echo "== downloading llama-cpp-python $VERSION (source)" >&2
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then      # a system python without pip: a throwaway venv's
        "$PYTHON" -m venv "$HOME_DIR/pip-venv"
        PYTHON="$HOME_DIR/pip-venv/bin/python"
    fi
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$VERSION" -d "$HOME_DIR/sdist" 2>&1 | { grep -v '^WARNING: Location' >&2 || true; }
    tar -xzf "$HOME_DIR/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$HOME_DIR"
fi

echo "== building llama-server and the RPC server (CPU, GGML_RPC=ON)" >&2
# LLAMA_USE_PREBUILT_UI=OFF: otherwise the configure step downloads the server's web UI
cmake -S "$src/vendor/llama.cpp" -B "$HOME_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_RPC=ON -DGGML_NATIVE=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
targets="llama-server"
rpc=$(cmake --build "$HOME_DIR/build" --target help | grep -oE '^[a-z-]*rpc-server' | head -1 || true)
[ -n "$rpc" ] && targets="$targets $rpc"
cmake --build "$HOME_DIR/build" --target $targets -j "$(nproc)" >&2
mkdir -p "$BIN"
for t in $targets; do cp "$HOME_DIR/build/bin/$t" "$BIN/"; done
ln -sfn "$src/vendor/llama.cpp" "$HOME_DIR/src"
rm -f "$BIN"/.chainplan-llama-cpp-*
touch "$STAMP"
echo "$BIN"
