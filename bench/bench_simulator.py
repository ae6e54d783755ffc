"""Time the discrete-event simulator: 10k / 100k / 1M requests, JFFC and JSQ.

Chains: 50 random chains (service times 1-20 s, capacities 1-20, fixed seed),
Poisson arrivals at load 0.8, exponential job sizes.  Each size is run
``--repeats`` times and the best wall time is reported (the machine is shared).
Servers that batch (issue 21): 100k requests over chains of three hops on shared
servers with a GPU-like ``batch_slowdown``, against the same chains without it.
Writes bench/results/simulator.md.

    .venv/bin/python bench/bench_simulator.py [--repeats 3] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solvers.batching import NO_SLOWDOWN, BatchSlowdown, saturation_rate  # noqa: E402
from solvers.calibration import LinearTiming  # noqa: E402
from solvers.chains import Chain, sort_fastest_first  # noqa: E402
from solvers.scenario import Server  # noqa: E402
from solvers.simulator import simulate  # noqa: E402

POLICIES = ("jffc", "jsq")


def make_chains(k: int, seed: int = 0) -> list[Chain]:
    rng = np.random.default_rng(seed)
    times = rng.uniform(1.0, 20.0, k)
    caps = rng.integers(1, 21, k)
    return sort_fastest_first([Chain((f"s{i}",), (1,), float(t), int(c)) for i, (t, c) in enumerate(zip(times, caps))])


GPU_CURVE = BatchSlowdown.from_pairs([[1, 1], [8, 1.2], [32, 1.8], [128, 4.5]])


def make_shared(num_servers: int, num_chains: int, seed: int = 0) -> tuple[list[Chain], list[Server]]:
    """Chains of three hops over shared servers (each server on several chains), all servers batching."""
    rng = np.random.default_rng(seed)
    servers = [Server(f"g{j}", 80.0, 0.01, float(b), LinearTiming.constant(0.01, float(b)), batch_slowdown=GPU_CURVE)
               for j, b in enumerate(rng.uniform(0.05, 0.3, num_servers))]
    chains = []
    for _ in range(num_chains):
        hops = rng.choice(num_servers, 3, replace=False)
        blocks = rng.integers(1, 5, 3)
        t = sum(servers[j].comm_time_s + servers[j].block_time_s * m for j, m in zip(hops, blocks))
        chains.append(Chain(tuple(servers[j].id for j in hops), tuple(int(m) for m in blocks), t,
                            int(rng.integers(1, 9))))
    return sort_fastest_first(chains), servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--chains", type=int, default=50)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--scaling", default="10,100,1000", help="chain counts for the 100k-request JFFC scaling table")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "simulator.md"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    chains = make_chains(args.chains)
    nu = sum(ch.capacity / ch.service_time_s for ch in chains)
    lam = args.load * nu
    rows = []
    for policy in POLICIES:
        for n in sizes:
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                r = simulate(chains, dispatcher=policy, arrival_rate=lam, requests=n, seed=1)
                best = min(best, time.perf_counter() - started)
            rows.append((policy, n, best, r.mean_response_s, r.response_ci95_s, r.mean_wait_s))
            print(f"{policy:6s} {n:>9,d} requests  {best:7.3f} s  ({n / best:,.0f} req/s)  "
                  f"mean response {r.mean_response_s:.3f} s", flush=True)

    scaling = []
    for k in [int(x) for x in args.scaling.split(",") if x]:
        many = make_chains(k, seed=k)
        lam_k = args.load * sum(ch.capacity / ch.service_time_s for ch in many)
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            simulate(many, dispatcher="jffc", arrival_rate=lam_k, requests=100_000, seed=1)
            best = min(best, time.perf_counter() - started)
        scaling.append((k, best))
        print(f"jffc    100,000 requests on {k} chains  {best:7.3f} s", flush=True)

    shared, servers = make_shared(20, 50)
    flat = [Server(s.id, s.memory_gb, s.comm_time_s, s.block_time_s, s.timing) for s in servers]
    lam_b = args.load * saturation_rate(shared, servers)
    batching = []
    for label, srv in (("none (batch-1)", flat), ("GPU-like curve", servers)):
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            r = simulate(shared, dispatcher="jffc", arrival_rate=lam_b, requests=100_000, seed=1, servers=srv)
            best = min(best, time.perf_counter() - started)
        batching.append((label, best, r.mean_response_s))
        print(f"jffc    100,000 requests, 50 chains on 20 shared servers, slowdown {label}: {best:7.3f} s", flush=True)

    uname = platform.uname()
    cpu = platform.processor() or uname.machine
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    lines = [
        "# Simulator benchmark",
        "",
        f"`bench/bench_simulator.py`: {len(chains)} chains (T 1-20 s, capacities 1-20, "
        f"total capacity {sum(ch.capacity for ch in chains)}), Poisson arrivals at load {args.load} "
        f"(lambda = {lam:.3f}/s), exponential sizes, 10 % warm-up; best of {args.repeats} runs (the machine is shared with other work, so timings are noisy), wall time of "
        "`simulate()` (job generation, event loop and statistics).",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}, "
        f"numpy {np.__version__}, {uname.system} {uname.release}.",
        "",
        "| policy | requests | seconds | requests/s | mean response (s) | 95 % CI (s) | mean wait (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for policy, n, secs, mean, ci, wait in rows:
        lines.append(f"| {policy} | {n:,} | {secs:.3f} | {n / secs:,.0f} | {mean:.3f} | {ci:.3f} | {wait:.3f} |")
    if scaling:
        lines += ["", "JFFC, 100,000 requests, same setting, by number of chains (O(log K) dispatch):", "",
                  "| chains | seconds |", "|---:|---:|"]
        lines += [f"| {k:,} | {secs:.3f} |" for k, secs in scaling]
    lines += ["", "Servers that batch: JFFC, 100,000 requests, 50 chains of three hops over 20 shared servers (each "
              f"server on several chains), load {args.load} of the saturation rate (lambda = {lam_b:.3f}/s). With a "
              "curve every start and departure changes the speed of every chain through the servers it touches "
              "(exact: route groups with virtual clocks); without one the constant-speed loop runs:", "",
              "| slowdown | seconds | requests/s | mean response (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {secs:.3f} | {100_000 / secs:,.0f} | {mean:.3f} |" for label, secs, mean in batching]
    lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
