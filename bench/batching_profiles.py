"""Batch-1 plans against batch-aware plans on real-GPU profiles (issue 21), written to bench/results/batching.md.

Servers are single H100, A100 and A40 GPUs whose times come from Vidur's published per-layer profiles
(bench/data/vidur_linear_ms.csv, derived by bench/vidur_extract.py; bench/data/README.md states the source):

* one decode step of one layer at batch ``b``: the profile's non-attention time at ``b`` tokens
  (measured) plus the attention's KV reads, ``b`` jobs x the mean context's KV bytes / the GPU's
  datasheet memory bandwidth (a roofline: Vidur's attention profiles are Git LFS objects we could not
  read);
* prefill of one job: the profile's time at the prompt's token count plus the causal attention's FLOPs
  at the datasheet's dense 16-bit rate;
* ``block_time_s`` = prefill + output tokens x decode step at batch 1; ``batch_slowdown`` at ``b`` =
  (prefill + output tokens x decode step at ``b``) / ``block_time_s`` (prefill is not slowed), made
  non-decreasing by a running maximum (the profile is noisy at small batches).

Network: ``comm_time_s`` by chainplan's calibration model (one round trip for the prompt and for every
output token): ``wan``, RTTs drawn from the RIPE Atlas measurements (seeded) plus its 18 ms per-hop overhead;
``lan``, one data centre, 0.5 ms and no overhead.

For each cluster: the reference rate is the saturation rate of the batch-aware ``proposed`` plan planned for
the highest rate ``2^k`` req/s it still plans for; ``lambda`` = load x that.  Every algorithm then plans the scenario with the curves
(batch-aware) and without them (batch-1; the same servers' one-job times); both plans' chains are
simulated with the curves present (JFFC, Poisson arrivals, exponential sizes) over ``--seeds`` seeds, and
their saturation rates are computed under the batch model.  Only the section this script writes is
replaced in the results file.

    flock /tmp/chainplan-heavy.lock .venv/bin/python bench/batching_profiles.py
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from batching_exact import T_975, replace_section  # noqa: E402
from machine import StealMeter, uptime  # noqa: E402
from mdtable import table  # noqa: E402

from solvers.algorithms import PlanOptions  # noqa: E402
from solvers.batching import BatchModel, saturation_rate  # noqa: E402
from solvers.calibration import comm_timing  # noqa: E402
from solvers.instances import ripe_rtts_ms  # noqa: E402
from solvers.runner import REGISTRY  # noqa: E402
from solvers.scenario import Scenario, parse_scenario  # noqa: E402
from solvers.simulator import simulate  # noqa: E402

SECTION = "## Batch-1 plans against batch-aware plans on real-GPU profiles"
PROFILE_CSV = ROOT / "bench" / "data" / "vidur_linear_ms.csv"
INPUT_TOKENS, OUTPUT_TOKENS, MAX_TOKENS = 512, 256, 1024
MEMORY_SHARE = 0.9          # vLLM's default gpu_memory_utilization: the rest is activations and the runtime


@dataclass(frozen=True)
class Gpu:
    name: str               # the profile's name
    memory_gb: float
    bandwidth_gb_s: float   # datasheet HBM/GDDR bandwidth
    tflops: float           # datasheet dense FP16/BF16 tensor throughput


GPUS = {g.name: g for g in (Gpu("h100", 80, 3350, 989), Gpu("a100", 80, 2039, 312), Gpu("a40", 48, 696, 149.7))}


@dataclass(frozen=True)
class ModelShape:
    label: str
    profile: str             # the profile's model name
    architecture: dict[str, Any]

    @property
    def kv_bytes_per_token(self) -> float:
        a = self.architecture
        return 2 * a["num_kv_heads"] * a["head_dim"] * 2      # keys and values, 16-bit

    @property
    def attention_width(self) -> int:
        return self.architecture["num_heads"] * self.architecture["head_dim"]


LLAMA_ARCH = {"hidden_size": 8192, "num_heads": 64, "num_kv_heads": 8, "head_dim": 128, "gated_ffn": True,
              "dtype": "fp16"}
MODELS = {
    "llama-2-70b": ModelShape("LLaMA-2-70B", "meta-llama/Llama-2-70b-hf",
                              {**LLAMA_ARCH, "num_layers": 80, "ffn_size": 28672}),
    "codellama-34b": ModelShape("CodeLlama-34B", "codellama/CodeLlama-34b-Instruct-hf",
                                {**LLAMA_ARCH, "num_layers": 48, "ffn_size": 22016}),
}
# node counts per GPU: 24 and 42 nodes, few fast GPUs and many slow ones
CLUSTERS = {24: {"h100": 4, "a100": 8, "a40": 12}, 42: {"h100": 6, "a100": 14, "a40": 22}}
CURVE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1024)


def load_profile(path: Path = PROFILE_CSV) -> dict[tuple[str, str], dict[int, float]]:
    """(gpu, model) -> {tokens: ms per layer} at tensor-parallel degree 1."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if int(row["tp"]) == 1:
                out.setdefault((row["gpu"], row["model"]), {})[int(row["num_tokens"])] = float(row["linear_ms_per_layer"])
    return out


def interpolate(points: dict[int, float], n: float) -> float:
    xs = sorted(points)
    if n <= xs[0]:
        return points[xs[0]]
    for x0, x1 in zip(xs, xs[1:]):
        if n <= x1:
            return points[x0] + (points[x1] - points[x0]) * (n - x0) / (x1 - x0)
    raise ValueError(f"{n} tokens is past the profile's {xs[-1]}")


@dataclass(frozen=True)
class ServerTiming:
    block_time_s: float
    curve: list[list[float]]          # batch_slowdown pairs
    decode_ms: dict[int, float]       # per layer, by batch size (for the report)


def server_timing(profile: dict[int, float], gpu: Gpu, model: ModelShape) -> ServerTiming:
    """One layer's time for one job, and its slowdown with ``b`` jobs decoding together."""
    context = INPUT_TOKENS + OUTPUT_TOKENS / 2                      # mean KV length during decode
    kv_read_ms = model.kv_bytes_per_token * context / (gpu.bandwidth_gb_s * 1e9) * 1e3
    decode = {b: interpolate(profile, b) + b * kv_read_ms for b in CURVE_BATCHES}
    causal_flops = 2 * INPUT_TOKENS ** 2 * model.attention_width     # QK^T and AV, half of them masked
    prefill = interpolate(profile, INPUT_TOKENS) + causal_flops / (gpu.tflops * 1e12) * 1e3
    one = prefill + OUTPUT_TOKENS * decode[1]
    curve, worst = [], 1.0
    for b in CURVE_BATCHES:
        worst = max(worst, (prefill + OUTPUT_TOKENS * decode[b]) / one)
        curve.append([b, round(worst, 6)])
    return ServerTiming(one / 1e3, curve, decode)


# the network: RTTs drawn from RIPE Atlas (wide area) with chainplan's per-hop overhead, or one data centre
NETWORKS = ("wan", "lan")
LAN_RTT_MS, LAN_OVERHEAD_S = 0.5, 0.0


def hop_comm_s(network: str, rng: np.random.Generator) -> float:
    """One hop's network time over a request: a round trip for the prompt and for every output token."""
    if network == "lan":
        base, _, per_output = comm_timing(LAN_RTT_MS, overhead_s=LAN_OVERHEAD_S)
    else:
        base, _, per_output = comm_timing(float(rng.choice(ripe_rtts_ms())))
    return base + per_output * OUTPUT_TOKENS


def cluster_doc(model_key: str, size: int, timings: dict[str, ServerTiming], curves: bool, rate: float,
                network: str, seed: int = 0) -> dict[str, Any]:
    model = MODELS[model_key]
    rng = np.random.default_rng(seed)
    servers = []
    for gpu_name, count in CLUSTERS[size].items():
        gpu, timing = GPUS[gpu_name], timings[gpu_name]
        for i in range(count):
            server = {"id": f"{gpu_name}-{i:02d}", "memory_gb": gpu.memory_gb * MEMORY_SHARE,
                      "comm_time_s": hop_comm_s(network, rng), "block_time_s": timing.block_time_s}
            if curves:
                server["batch_slowdown"] = timing.curve
            servers.append(server)
    return {"name": f"{model_key}-{size}-{network}{'' if curves else '-batch1'}",
            "model": {"name": model.profile, "architecture": model.architecture},
            "servers": servers,
            "workload": {"arrival_rate": rate, "target_load": 0.7, "input_tokens": INPUT_TOKENS,
                         "output_tokens": OUTPUT_TOKENS, "max_tokens": MAX_TOKENS}}


def plan_chains(scenario: Scenario, algorithm: str, time_limit_s: float | None) -> tuple[list[Any], float]:
    started = time.perf_counter()
    result = REGISTRY[algorithm].run(scenario, PlanOptions(time_limit_s=time_limit_s, seed=1))
    if not result.feasible or not result.chains:
        raise RuntimeError(f"{algorithm} found no plan for {scenario.name}: {result.reason}")
    return result.chains, time.perf_counter() - started


@dataclass(frozen=True)
class Judged:
    saturation_rps: float
    mean_s: float
    mean_ci_s: float
    p95_s: float
    p95_ci_s: float
    chains: int
    jobs: int                       # planned slots, all chains
    max_jobs: int                   # the most planned jobs on one GPU
    worst_factor: float             # the largest slowdown at full planned occupancy
    plan_s: float
    means: tuple[float, ...] = ()   # each seed's mean response (the seeds are the same for both plans: paired)


def judge(chains: list[Any], aware: Scenario, rate: float, requests: int, seeds: int, plan_s: float) -> Judged:
    """Both plans judged the same way: the batch model's saturation rate and the batch-aware simulator."""
    means, p95s = [], []
    for seed in range(1, seeds + 1):
        r = simulate(chains, arrival_rate=rate, requests=requests, seed=seed, servers=aware.servers)
        means.append(r.mean_response_s)
        p95s.append(r.p95_response_s)
    model = BatchModel.of(aware)
    occupancy = model.occupancy(chains)
    worst = max(model.curves[j].factor(b) for j, b in enumerate(occupancy))
    return Judged(saturation_rate(chains, aware.servers), statistics.fmean(means), half_width(means),
                  statistics.fmean(p95s), half_width(p95s), len(chains), sum(ch.capacity for ch in chains),
                  max(occupancy), worst, plan_s, tuple(means))


def half_width(values: list[float]) -> float:
    n = len(values)
    return T_975.get(n, 1.96) * statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan


def reference_rate(model_key: str, size: int, timings: dict[str, ServerTiming], network: str) -> float:
    """The saturation rate of the batch-aware ``proposed`` plan planned for the highest rate ``2^k`` req/s it
    still plans for (near that, it keeps every chain it can form); the loads are fractions of it."""
    best, rate = 0.0, 0.125
    while True:
        scenario = parse_scenario(cluster_doc(model_key, size, timings, True, rate, network))
        result = REGISTRY["proposed"].run(scenario, PlanOptions(seed=1))
        if not result.feasible or not result.chains:
            return best
        best, rate = saturation_rate(result.chains, scenario.servers), 2 * rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000, help="per simulation (10 %% warm-up)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--algorithms", nargs="+", default=["proposed", "search", "optimal-allocation"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(CLUSTERS), choices=list(CLUSTERS))
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    ap.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8])
    ap.add_argument("--search-limit", type=float, default=2.0, help="search's time_limit_s")
    ap.add_argument("--exact-limit", type=float, default=5.0, help="optimal-allocation's time_limit_s")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batching.md"))
    args = ap.parse_args()
    profile = load_profile()
    limits = {"search": args.search_limit, "optimal-allocation": args.exact_limit}
    load_before, started = uptime(), time.perf_counter()
    rows, curves = [], {}
    with StealMeter() as steal:
        for model_key in args.models:
            model = MODELS[model_key]
            timings = {g: server_timing(profile[g, model.profile], GPUS[g], model) for g in GPUS}
            curves[model_key] = timings
            for size in args.sizes:
              for network in args.networks:
                reference = reference_rate(model_key, size, timings, network)
                for load in args.loads:
                    rate = load * reference
                    aware = parse_scenario(cluster_doc(model_key, size, timings, True, rate, network))
                    batch1 = parse_scenario(cluster_doc(model_key, size, timings, False, rate, network))
                    for algorithm in args.algorithms:
                        pair = []
                        for scenario in (batch1, aware):
                            chains, secs = plan_chains(scenario, algorithm, limits.get(algorithm))
                            pair.append(judge(chains, aware, rate, args.requests, args.seeds, secs))
                        rows.append((model_key, size, network, load, rate, algorithm, *pair))
                        b1, ba = pair
                        print(f"{model_key} J={size} {network} load {load:.2f} ({rate:.3f} req/s) {algorithm:18s} "
                              f"batch-1: {b1.mean_s:7.2f} s p95 {b1.p95_s:7.2f} sat {b1.saturation_rps:.3f} | "
                              f"aware: {ba.mean_s:7.2f} s p95 {ba.p95_s:7.2f} sat {ba.saturation_rps:.3f}",
                              flush=True)
    elapsed = time.perf_counter() - started
    body = report(rows, curves, args, load_before, uptime(), steal.share, elapsed)
    out = Path(args.out)
    out.write_text(replace_section(out.read_text(encoding="utf-8") if out.exists() else "", body, SECTION),
                   encoding="utf-8")
    print(f"wrote {out} ({elapsed:.0f} s)")


def report(rows: list[tuple], curves: dict[str, dict[str, ServerTiming]], args: argparse.Namespace,
           load_before: str, load_after: str, steal: float, elapsed: float) -> str:
    import os
    import platform
    lines = [SECTION, "",
             f"`flock /tmp/chainplan-heavy.lock .venv/bin/python bench/batching_profiles.py` (defaults: "
             f"`--requests {args.requests} --seeds {args.seeds} --search-limit {args.search_limit:g} "
             f"--exact-limit {args.exact_limit:g}`), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; {elapsed:.0f} s in all. Load (`uptime`) before: `{load_before}`; after: "
             f"`{load_after}`; CPU steal during the run {steal:.1%}.", ""]
    lines += ["Servers: single GPUs (tensor-parallel degree 1), "
              f"{MEMORY_SHARE:.0%} of their memory for weights and KV cache. Workload: {INPUT_TOKENS} input and "
              f"{OUTPUT_TOKENS} output tokens (means; exponential job sizes), KV slots sized for {MAX_TOKENS} "
              "tokens, 16-bit weights and cache. Times from Vidur's profiles (bench/data/README.md): "
              "`block_time_s` is prefill plus the output tokens' decode steps at batch 1, `batch_slowdown` that "
              "time with `b` jobs decoding together over it (module docstring: what is measured, what is a "
              "roofline). Network (chainplan's calibration model, a round trip per output token and per hop): *wan*, "
              "RIPE Atlas RTTs (seed 0) plus its 18 ms per-hop overhead; *lan*, 0.5 ms and no overhead.", ""]
    lines += ["Decode step per layer (ms) and the slowdown curve at some batch sizes:", ""]
    shown = (1, 16, 64, 128, 256, 512, 1024)
    curve_rows = []
    for model_key, timings in curves.items():
        for gpu, t in timings.items():
            factor = dict((b, f) for b, f in t.curve)
            curve_rows.append((MODELS[model_key].label, gpu, f"{t.block_time_s:.3f}",
                               *(f"{t.decode_ms[b]:.2f} / {factor[b]:.2f}" for b in shown)))
    lines += table(("model", "GPU", "block_time_s", *(f"b = {b}" for b in shown)), curve_rows)
    lines += ["", "Clusters: " + "; ".join(f"{n} nodes: " + ", ".join(f"{c} {g.upper()}" for g, c in mix.items())
                                             for n, mix in CLUSTERS.items()) + ". "
              "`lambda` = load x a reference rate: the saturation rate of the batch-aware `proposed` plan planned for "
              "the highest rate `2^k` req/s it still plans for. "
              "*batch-1*: planned without the curves; *aware*: planned with them; both simulated with the curves "
              f"(JFFC, {args.requests} requests per seed, 10 % warm-up, {args.seeds} seeds; 95 % intervals over "
              "the seeds). *sat*: saturation rate under the batch model (req/s). *jobs (GPU)*: planned KV "
              "jobs, all chains (the most on one GPU). *max f*: the largest slowdown at full planned occupancy. "
              "*gain*: 1 - aware / batch-1 mean response. *aware - batch-1*: the difference of the mean responses with "
              "its 95 % interval over the seeds' paired differences (both plans see the same arrivals and sizes for "
              "a seed); *worse*: `yes` when the aware plan is slower beyond that interval.", ""]
    header = ("model", "J", "network", "load", "lambda", "algorithm",
              "batch-1 mean (s)", "batch-1 p95 (s)", "batch-1 sat", "batch-1 jobs (GPU)", "batch-1 max f",
              "aware mean (s)", "aware p95 (s)", "aware sat", "aware jobs (GPU)", "aware max f", "gain",
              "aware - batch-1 (s)", "worse")
    out_rows = []
    for model_key, size, network, load, rate, algorithm, b1, ba in rows:
        out_rows.append((MODELS[model_key].label, size, network, f"{load:.0%}", f"{rate:.3f}", algorithm,
                         *cells(b1), *cells(ba), f"{1 - ba.mean_s / b1.mean_s:+.1%}", *paired(b1, ba)))
    lines += table(header, out_rows)
    lines.append("")
    return "\n".join(lines)


def paired(b1: Judged, ba: Judged) -> tuple[str, str]:
    """The aware plan's mean response less the batch-1 plan's, with the 95 % interval of the seeds' paired
    differences, and whether the aware plan is slower beyond it."""
    diffs = [a - b for a, b in zip(ba.means, b1.means)]
    if not diffs:
        return "-", "-"
    d, h = statistics.fmean(diffs), half_width(diffs)
    return f"{d:+.2f} ± {h:.2f}", "yes" if d - h > 0 else "no"


def cells(j: Judged) -> tuple[str, ...]:
    return (f"{j.mean_s:.2f} ± {j.mean_ci_s:.2f}", f"{j.p95_s:.2f} ± {j.p95_ci_s:.2f}", f"{j.saturation_rps:.3f}",
            f"{j.jobs} ({j.max_jobs})", f"{j.worst_factor:.2f}")


if __name__ == "__main__":
    main()
