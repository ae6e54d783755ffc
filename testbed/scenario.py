"""The testbed's scenario: the servers a user has (a third large, the rest small), the scenario
chainplan plans with (built from measured times only) and the arrivals replayed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from testbed.calibrate import Calibration

NUM_BLOCKS = 8
BLOCK_GB = 1.0          # memory is budgeted in block units (see docs/petals-testbed.md)
SLOT_GB = 0.25          # one job's KV cache for one block, in the same units
JOBS_LARGE, BLOCKS_SMALL, JOBS_SMALL = 2, 3, 2


def server_profile(n: int) -> list[dict]:
    """n servers: the first third large (whole model + 2 jobs), the rest small (3 blocks + 2 jobs)."""
    large = max(1, n // 3)
    out = []
    for i in range(n):
        if i < large:
            out.append({"id": f"large-{i + 1}", "memory_gb": NUM_BLOCKS * (BLOCK_GB + JOBS_LARGE * SLOT_GB),
                        "rtt_ms": 40.0 + 10.0 * i})
        else:
            j = i - large
            out.append({"id": f"small-{j + 1}", "memory_gb": BLOCKS_SMALL * (BLOCK_GB + JOBS_SMALL * SLOT_GB),
                        "rtt_ms": 5.0 + 3.0 * j})
    return out


def build_scenario(profile: list[dict], cal: Calibration, tokens: tuple[int, int], arrivals: list[float]) -> dict:
    l_in, l_out = tokens
    # the measured round trip where there is one (what the client will see), else the configured one
    if cal.hops:   # measured per server on the deployment: set-up, prompt step, l_out - 1 token steps
        servers = [{"id": p["id"], "memory_gb": p["memory_gb"], "rtt_ms": p["rtt_ms"],
                    "comm_time_s": cal.hops[p["id"]].comm_time_s(l_out),
                    "block_time_s": cal.hops[p["id"]].block_time_s(l_out)} for p in profile]
        for s in servers:   # each server's measured batch slowdown (none measured: the batch-1 model)
            if cal.batch_slowdown.get(s["id"]):
                s["batch_slowdown"] = cal.batch_slowdown[s["id"]]
    else:
        servers = [{"id": p["id"], "memory_gb": p["memory_gb"], "rtt_ms": p["rtt_ms"],
                    "comm_time_s": l_out * (cal.network_rtt_s.get(p["id"], p["rtt_ms"] / 1e3) + cal.hop_overhead_s),
                    "block_time_s": l_out * cal.block_s} for p in profile]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 1.0
    return {"name": "petals-testbed",
            "model": {"name": "tiny-llama", "num_blocks": NUM_BLOCKS, "block_size_gb": BLOCK_GB,
                      "cache_size_gb": SLOT_GB},
            "servers": servers,
            "workload": {"arrival_rate": rate, "input_tokens": l_in, "output_tokens": l_out,
                         "max_tokens": l_in + l_out,
                         "trace": [[a - arrivals[0], l_in, l_out] for a in arrivals]}}


def arrivals_poisson(n: int, rate: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.cumsum(rng.exponential(1.0 / rate, n)) - 0.0)


def arrivals_azure(path: Path, n: int, rate: float) -> list[float]:
    """The slice's inter-arrival pattern, rescaled in time to the requested mean rate."""
    from solvers.trace import load_azure_trace
    tr = load_azure_trace(path, limit=n)
    a = np.asarray(tr.arrival_s, dtype=float)
    a = a - a[0]
    span = a[-1] if a[-1] > 0 else 1.0
    return list(a * ((len(a) - 1) / rate) / span)
