"""Run the GPU probe on this machine's CPU for a LLaMA-2-7B-shaped block and print a table.

    .venv/bin/python bench/probe_cpu.py [--dtypes fp32,bf16] [--threads N] [--device cpu|cuda]

Writes each full report to --json-dir (default /tmp/chainplan-probe-bench) and prints a Markdown
summary for bench/results/probe-cpu.md.  Pass --device cuda on a GPU server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prefill-lengths", default="128,512,1024")
    ap.add_argument("--decode-contexts", default="128,1024,2048")
    ap.add_argument("--json-dir", type=Path, default=Path("/tmp/chainplan-probe-bench"))
    ap.add_argument("--repeats", default="3")
    args = ap.parse_args()
    out_dir = args.json_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    load_before = os.getloadavg()
    for dtype in args.dtypes.split(","):
        path = out_dir / f"probe-{args.device}-{args.model}-{dtype}.json"
        cmd = [sys.executable, "-m", "gpu_probe", "measure", "--json", "--model", args.model,
               "--dtype", dtype, "--device", args.device, "--threads", str(args.threads),
               "--prefill-lengths", args.prefill_lengths, "--decode-contexts", args.decode_contexts,
               "--repeats", args.repeats, "--warmup", "1", "--input-tokens", "2000",
               "--output-tokens", "20", "--max-tokens", "2048", "--no-cache", "--output", str(path)]
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        rows.append(json.loads(path.read_text()))
    doc = rows[0]
    print(f"Load average (1/5/15 min) before: {load_before}, after: {os.getloadavg()}\n")
    print(f"Device: {doc['device']['kind']} — {doc['device']['name']}, {doc['device']['cpu_threads']} "
          f"torch threads, {doc['device']['total_memory_gb']:.1f} GB; torch {doc['device']['torch_version']}\n")
    print("| dtype | projection B/block (measured; = analytic) | total B/block | KV B/token | "
          + " | ".join(f"prefill {p['length']} ms (min-max)" for p in doc["measurement"]["prefill"]) + " | "
          + " | ".join(f"decode ctx {p['length']} ms (min-max)" for p in doc["measurement"]["decode"])
          + " | t_o ms | a us/tok | b ms/tok | block_time_s (2000/20) | block_size_gb | cache_size_gb (2048) |")
    print("|" + "---|" * (10 + len(doc["measurement"]["prefill"]) + len(doc["measurement"]["decode"])))
    for r in rows:
        m, d = r["measurement"], r["derived"]
        pts = [f"{p['median_s'] * 1e3:.1f} ({p['min_s'] * 1e3:.1f}-{p['max_s'] * 1e3:.1f})"
               for p in m["prefill"] + m["decode"]]
        print(f"| {r['dtype']} | {m['param_bytes_per_block']} | {m['param_bytes_per_block_total']} | "
              f"{m['kv_bytes_per_token']:.0f} | " + " | ".join(pts)
              + f" | {d['t_o_s'] * 1e3:.2f} | {d['a_s_per_input_token'] * 1e6:.1f} | "
              f"{d['b_s_per_output_token'] * 1e3:.1f} | {d['block_time_s']:.3f} | {d['block_size_gb']:.4f} | "
              f"{d['cache_size_gb']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
