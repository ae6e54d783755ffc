#!/usr/bin/env bash
# Install PETALS 2.2.0.post1 into its own virtual environment (.venv-petals) without
# reaching anything but the Python package index.
#
# Why a recipe: PETALS needs hivemind 1.1.10.post2, published only as a source package
# whose setup.py downloads the p2pd daemon binary from GitHub at build time.  We build
# that wheel locally instead, placing in the source tree the linux x86-64 p2pd shipped
# inside the hivemind 1.1.9 wheel (same daemon protocol: hivemind/p2p/ is identical in
# both releases) and setting setup.py's expected hash to that binary's sha256.
# Pins that matter: multiaddr==0.0.9 (0.2.0 drops the leading '/' of unix socket paths
# and every generate() fails with "stream reset"), accelerate==0.25.0 (newer ones need a
# newer huggingface_hub than PETALS' transformers pin allows), pydantic 1.10.x, and the
# torch 2.13.0 CPU build (hivemind's grad_scaler import gets a fallback for it).
#
# Idempotent: a stamp in the venv records the recipe version; rerunning is a no-op.
# Usage: bash scripts/install_petals.sh [--force]     (PETALS_VENV overrides the path)
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPE=3   # bump when the recipe changes: existing venvs are rebuilt
VENV="${PETALS_VENV:-$PWD/.venv-petals}"
STAMP="$VENV/.chainplan-petals-recipe-$RECIPE"
PYTHON="${PYTHON:-python3}"
HIVEMIND_VERSION=1.1.10.post2
P2PD_DONOR=1.1.9

if [ "${1:-}" = "--force" ]; then rm -rf "$VENV"; fi
if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import petals" >/dev/null 2>&1; then
    echo "== PETALS venv ready: $VENV"
    exit 0
fi

t0=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Building hivemind only: setuptools<70 still ships pkg_resources, which its setup.py
# imports (torch 2.13 itself needs a newer setuptools, so never constrain the venv).
build_constraints="$work/build-constraints.txt"
echo 'setuptools<70' > "$build_constraints"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's noise about this machine's extra file indexes is dropped; its exit status is kept
quiet() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

echo "== downloading hivemind $HIVEMIND_VERSION (source) and $P2PD_DONOR (wheel, for its p2pd)"
PIP_CONSTRAINT="$build_constraints" quiet "$PYTHON" -m pip download --quiet --no-deps --no-binary hivemind "hivemind==$HIVEMIND_VERSION" -d "$work/sdist"
PIP_CONSTRAINT="$build_constraints" quiet "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: "hivemind==$P2PD_DONOR" -d "$work/donor"

echo "== building the hivemind $HIVEMIND_VERSION wheel with the donor p2pd"
tar -xzf "$work/sdist/hivemind-$HIVEMIND_VERSION.tar.gz" -C "$work"
src="$work/hivemind-$HIVEMIND_VERSION"
"$PYTHON" - "$work/donor"/hivemind-"$P2PD_DONOR"-*.whl "$src" <<'EOF'
import hashlib, os, re, sys, zipfile
wheel, src = sys.argv[1], sys.argv[2]
dest = os.path.join(src, "hivemind", "hivemind_cli", "p2pd")
with zipfile.ZipFile(wheel) as z, open(dest, "wb") as out:
    out.write(z.read("hivemind/hivemind_cli/p2pd"))
os.chmod(dest, 0o755)
digest = hashlib.sha256(open(dest, "rb").read()).hexdigest()
setup_py = os.path.join(src, "setup.py")
text = open(setup_py).read()
text, n = re.subn(r'("p2pd-linux-amd64": ")[0-9a-f]{64}(")', rf"\g<1>{digest}\g<2>", text)
if n != 1:
    sys.exit("setup.py: expected exactly one p2pd-linux-amd64 hash to patch")
open(setup_py, "w").write(text)
# torch >= 2.4 moved _refresh_per_optimizer_state out of torch.cuda.amp.grad_scaler
scaler = os.path.join(src, "hivemind", "optim", "grad_scaler.py")
old = "from torch.cuda.amp.grad_scaler import OptState, _refresh_per_optimizer_state\n"
new = ("try:\n    from torch.cuda.amp.grad_scaler import OptState, _refresh_per_optimizer_state\n"
       "except ImportError:  # torch >= 2.4\n"
       "    from torch.amp.grad_scaler import OptState, _refresh_per_optimizer_state\n")
text = open(scaler).read()
if old not in text:
    sys.exit("grad_scaler.py: import line to patch not found")
open(scaler, "w").write(text.replace(old, new))
print(f"   p2pd sha256 {digest}")
EOF
PIP_CONSTRAINT="$build_constraints" quiet "$PYTHON" -m pip wheel --quiet --no-deps "$src" -w "$work/wheels"

echo "== creating $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
echo "== installing torch==2.13.0 (the CPU build on this machine's disk), then petals==2.2.0.post1"
# torch first and alone: resolved together with petals, pip sees torch==2.13.0 and the
# local 2.13.0+cpu build as a conflict.
quiet "$VENV/bin/python" -m pip install --quiet torch==2.13.0 "numpy<2"
quiet "$VENV/bin/python" -m pip install --quiet --find-links "$work/wheels" \
    "hivemind==$HIVEMIND_VERSION" petals==2.2.0.post1 accelerate==0.25.0 multiaddr==0.0.9 \
    "pydantic>=1.10,<2" "numpy<2" "torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
"$VENV/bin/python" -c "import petals, hivemind, torch; print('   petals', petals.__version__, 'hivemind', hivemind.__version__, 'torch', torch.__version__)"
touch "$STAMP"
echo "== PETALS venv ready in $(( $(date +%s) - t0 )) s: $VENV"
