#!/usr/bin/env bash
# One short device run (< 5 min): the GPU probe on CUDA (events, synchronisation, peak
# memory, the batch slowdown sweep) on the testbed's tiny LLaMA, the batch slowdown of a
# LLaMA-3-8B-shaped block beside its H100 roofline, then the PETALS testbed with its servers
# on the GPU (each server process capped at a share of the GPU's memory).  Writes
# bench/results/probe-cuda.md, bench/results/batching-cuda.md and bench/results/testbed-cuda.md
# (+ .csv/.png/.json).
#
#   bash bench/device_check.sh                 # on a CUDA machine
#   bash bench/device_check.sh --device cpu    # rehearsal on CPU: writes to $OUT or a temp dir
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
[ "${1:-}" = "--device" ] && device="$2"
out=bench/results
suffix=cuda
if [ "$device" != "cuda" ]; then out="${OUT:-$(mktemp -d)}"; suffix="$device"; fi
mkdir -p "$out"
PY="${CHAINPLAN_PYTHON:-.venv/bin/python}"
PETALS_PY="${PETALS_PYTHON:-.venv-petals/bin/python}"
[ -x "$PY" ] || { echo "device_check: no chainplan environment at $PY (bash scripts/_bootstrap.sh dev,probe)" >&2; exit 2; }
[ -x "$PETALS_PY" ] || { echo "device_check: no PETALS environment at $PETALS_PY (bash scripts/install_petals.sh)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== tiny LLaMA"
PYTHONPATH=. PYTHONWARNINGS=ignore "$PETALS_PY" -m serving.petals.tiny_model "$work/tiny-llama" >/dev/null

echo "== probe on $device"
t0=$(date +%s)
timeout 120 "$PY" -m gpu_probe measure --model "$work/tiny-llama/config.json" --device "$device" \
    --input-tokens 8 --output-tokens 12 --max-tokens 64 --prefill-lengths 8,64 --decode-contexts 8,256 --json --no-cache > "$work/probe.json"
"$PY" - "$work/probe.json" "$out/probe-$suffix.md" "$device" <<'PYEOF'
import json, subprocess, sys
report = json.load(open(sys.argv[1]))
lines = [f"# GPU probe on {sys.argv[3]}: the testbed's tiny LLaMA (8 blocks, hidden 64)", "",
         f"Regenerate: `bash bench/device_check.sh{'' if sys.argv[3] == 'cuda' else ' --device ' + sys.argv[3]}`", "",
         "```json", json.dumps(report, indent=1)[:6000], "```", ""]
open(sys.argv[2], "w").write("\n".join(lines))
PYEOF
echo "   probe: $(( $(date +%s) - t0 )) s -> $out/probe-$suffix.md"

echo "== batch slowdown on $device"
t1=$(date +%s)
{
  echo "# Batch slowdown measured by the probe on $device"; echo
  echo "Regenerate: \`bash bench/device_check.sh$([ "$device" = cuda ] || echo " --device $device")\`"; echo
  PYTHONPATH=. "$PY" bench/probe_batch.py --report "$work/probe.json" --title "The testbed's tiny LLaMA (hidden 64)"
  # A real block's curve: LLaMA-3-8B (GQA) in fp16 at the datasheet-mix workload's context (512 + 128/2), with the
  # roofline of an H100 SXM's datasheet figures beside it.  The CPU rehearsal only checks the path, on a short sweep.
  if [ "$device" = cuda ]; then big=(--max-batch 256 --prefill-lengths 128,512 --decode-contexts 128,1024 --timeout 150)
  else big=(--max-batch 4 --prefill-lengths 8,16 --decode-contexts 8,16 --threads 2 --timeout 150); fi
  PYTHONPATH=. "$PY" bench/probe_batch.py --model llama-3-8b --dtype fp16 --device "$device" \
      --input-tokens 512 --output-tokens 128 --roofline 989,3350 "${big[@]}" \
      --title "LLaMA-3-8B-shaped block in fp16, beside the roofline of 989 TFLOPS and 3350 GB/s"
} > "$out/batching-$suffix.md"
echo "   batch slowdown: $(( $(date +%s) - t1 )) s -> $out/batching-$suffix.md"

echo "== testbed with the servers on $device"
# --petals-settle 0: this checks the CUDA path within the 5 minutes, not PETALS' route choice (the 9-server
# CPU record waits for the swarm's second announcements; see docs/petals-testbed.md)
frac=()
[ "$device" = "cuda" ] && frac=(--gpu-memory-fraction 0.08)
timeout 200 "$PY" -m testbed --device "$device" "${frac[@]}" --servers 3 --requests 30 \
    --algorithms proposed,petals,whole-model --python "$PETALS_PY" --out "$out" --name "testbed-$suffix" \
    --calibration-reps 2 --deployed-probe-reps 2 --petals-settle 0 \
    --routes "${DEVICE_CHECK_ROUTES:-local}" | tail -n 1
echo "== device check done in $(( $(date +%s) - t0 )) s: $out/probe-$suffix.md $out/batching-$suffix.md $out/testbed-$suffix.md"
