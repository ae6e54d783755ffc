"""The GPU probe's batch slowdown on this machine, as a Markdown section for bench/results/batching.md.

    .venv/bin/python bench/probe_batch.py --model DIR/config.json [--device cpu|cuda] [--max-batch N]
        [--input-tokens 8 --output-tokens 12] [--threads N] [--roofline TFLOPS,GBPS]
    .venv/bin/python bench/probe_batch.py --report probe.json      # format a report measured already

Runs ``python -m gpu_probe measure --json`` (the sweep's context is l_in + l_out/2) and prints the
section: machine and load, the command, then per batch size the step's median (p25-p75), the
factor the report derives, and factor / b (1 = pure time-sharing, near 0 = batching is free).
``--roofline`` adds the factor ``solvers.calibration.roofline_slowdown_for`` predicts from those
datasheet figures for the same block and context, for comparison.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from machine import StealMeter, uptime

REPO = Path(__file__).resolve().parents[1]


def measure(args) -> tuple[dict, str, str, float]:
    cmd = [sys.executable, "-m", "gpu_probe", "measure", "--json", "--no-cache", "--quiet",
           "--model", args.model, "--device", args.device, "--max-batch", str(args.max_batch),
           "--input-tokens", str(args.input_tokens), "--output-tokens", str(args.output_tokens),
           "--max-tokens", str(args.input_tokens + args.output_tokens),
           "--prefill-lengths", args.prefill_lengths, "--decode-contexts", args.decode_contexts]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    load = uptime()
    with StealMeter() as steal:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    if not out.stdout.strip():
        raise SystemExit(f"probe_batch: the probe failed (exit {out.returncode}): {out.stderr.strip()}")
    shown = "PYTHONPATH=. .venv/bin/python -m gpu_probe " + shlex.join(cmd[3:])
    if out.returncode:      # printed, but implausible (e.g. a short CPU sweep's negative fit): say so, keep the curve
        shown += f"\n\n    (exit {out.returncode}: {' '.join(out.stderr.split())})"
    return json.loads(out.stdout), load, shown, steal.share


def roofline(doc: dict, spec: str | None) -> dict[int, float]:
    if not spec:
        return {}
    from solvers.calibration import Architecture, roofline_slowdown_for
    tflops, bandwidth = (float(x) for x in spec.split(","))
    arch_doc = doc["model"]["architecture"]
    arch = Architecture(**{k: arch_doc[k] for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                                    "ffn_size", "gated_ffn", "head_dim", "dtype", "kv_dtype")})
    curve = roofline_slowdown_for(arch, context_tokens=doc["measurement"]["batch_context_tokens"], tflops=tflops,
                                  mem_bandwidth_gb_s=bandwidth)
    return {p["batch"]: curve.factor(p["batch"]) for p in doc["measurement"]["batch_decode"]}


def section(doc: dict, *, title: str, command: str | None, load: str | None, steal: float | None,
            roofline_spec: str | None) -> str:
    m, dv = doc["measurement"], doc["device"]
    arch = doc["model"]["architecture"]
    curve = doc["derived"]["batch_slowdown"]
    if not curve:
        return f"## {title}\n\nNo batch curve in this report (`--max-batch 1`, or memory for one sequence).\n"
    predicted = roofline(doc, roofline_spec)
    lines = [f"## {title}", ""]
    if command:
        lines += ["Command (from the repository root):", "", f"    {command}", ""]
    lines += [f"Device: {dv['kind']}, {dv['name']}, {dv['cpu_threads']} torch threads, torch {dv['torch_version']}"
              + (f", CUDA {dv['cuda_version']}" if dv.get("cuda_version") else "") + ".",
              f"Block: {doc['model']['name']} (hidden {arch['hidden_size']}, {arch['num_heads']} heads, "
              f"{arch['num_kv_heads']} KV heads, FFN {arch['ffn_size']}), computed in {m['compute_dtype']}; "
              f"each sequence holds {m['batch_context_tokens']} tokens of KV; timer {m['timer']}, "
              f"{m['repeats']} interleaved rounds, median (p25-p75).",
              f"Memory budget would allow {m['batch_memory_limit']} sequences."]
    if load:
        lines.append(f"Load before the run: `{load}`" + (f"; CPU steal during it: {steal:.1%}." if steal == steal
                                                            and steal is not None else "."))
    head = "| batch | step ms (p25-p75) | factor | factor / batch |" + (" roofline factor |" if predicted else "")
    lines += ["", head, "|---|---|---|---|" + ("---|" if predicted else "")]
    for p, (b, f) in zip(m["batch_decode"], curve):
        row = (f"| {b} | {p['median_s'] * 1e3:.3f} ({p['p25_s'] * 1e3:.3f}-{p['p75_s'] * 1e3:.3f}) | {f:.3f} | "
               f"{f / b:.3f} |")
        lines.append(row + (f" {predicted[b]:.3f} |" if predicted else ""))
    lines += ["", f"`derived.batch_slowdown`: `{json.dumps(curve)}`", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", type=Path, help="format this probe report instead of measuring")
    ap.add_argument("--model", help="preset or config.json (e.g. the testbed's tiny model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--input-tokens", type=int, default=8)
    ap.add_argument("--output-tokens", type=int, default=12)
    ap.add_argument("--prefill-lengths", default="8,64")
    ap.add_argument("--decode-contexts", default="8,256")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--roofline", metavar="TFLOPS,GBPS", help="datasheet figures for the roofline column")
    ap.add_argument("--title", default="Probe: measured batch slowdown")
    args = ap.parse_args()
    if args.report:
        doc, load, command, steal = json.loads(args.report.read_text()), None, None, None
    elif args.model:
        doc, load, command, steal = measure(args)
    else:
        ap.error("give --model (to measure) or --report (to format)")
    print(section(doc, title=args.title, command=command, load=load, steal=steal, roofline_spec=args.roofline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
