"""Scenario generators for the published evaluation settings.

``paper_scenario`` builds the simulation study's cluster: BLOOM-176B
(L = 70, s_m = 1.32 GB, s_c = 0.11 GB), 2000 input / 20 output tokens, a
fraction ``eta`` of high-performance servers (40 GB, 120 TFLOPS, 1020 GB/s)
and the rest low-performance (20 GB, 80 TFLOPS, 510 GB/s), each with a
round-trip time drawn from the RIPE Atlas European measurements; times follow
the default calibration model (18 ms per-hop overhead included there).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .scenario import Scenario, parse_scenario

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
RIPE_CSV = SHARED_DATA / "ripe_atlas_eu_rtt_2024-07.csv"
AZURE_TRACE_CSV = SHARED_DATA / "azure_llm_inference_trace_code_2023-11.csv"

HIGH = {"memory_gb": 40.0, "tflops": 120.0, "mem_bandwidth_gb_s": 1020.0}
LOW = {"memory_gb": 20.0, "tflops": 80.0, "mem_bandwidth_gb_s": 510.0}
BLOOM = {"name": "bloom-176b", "num_blocks": 70, "block_size_gb": 1.32, "cache_size_gb": 0.11,
         "flops_per_token_gflops": 5.0}


@lru_cache(maxsize=4)
def ripe_rtts_ms(path: str | Path = RIPE_CSV) -> np.ndarray:
    """First-measurement RTTs (ms) of every RIPE Atlas row with a usable value."""
    values = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                v = float(row["latency_m1"])
            except (TypeError, ValueError):
                continue
            if np.isfinite(v) and v > 0:
                values.append(v)
    if not values:
        raise ValueError(f"no usable RTTs in {path}")
    return np.array(values)


def paper_scenario_doc(num_servers: int = 20, eta: float = 0.2, arrival_rate: float = 0.2, seed: int = 0,
                       target_load: float = 0.7, input_tokens: int = 2000, output_tokens: int = 20,
                       rtts_ms: np.ndarray | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rtts = ripe_rtts_ms() if rtts_ms is None else rtts_ms
    num_high = int(round(eta * num_servers))
    servers = []
    for i in range(num_servers):
        kind, spec = ("hi", HIGH) if i < num_high else ("lo", LOW)
        servers.append({"id": f"{kind}-{i:05d}", **spec, "rtt_ms": float(rng.choice(rtts))})
    return {
        "name": f"paper-J{num_servers}-eta{eta:g}-seed{seed}",
        "model": dict(BLOOM),
        "servers": servers,
        "workload": {"arrival_rate": arrival_rate, "target_load": target_load,
                     "input_tokens": input_tokens, "output_tokens": output_tokens, "max_tokens": 2048},
    }


def paper_scenario(**kwargs: Any) -> Scenario:
    return parse_scenario(paper_scenario_doc(**kwargs))


# -- tiny instances that exhaustive search can solve (solvers/oracle.py; bench/tiny_eval.py) ----------------

TINY_SHAPES = [(3, 10, 6), (3, 8, 5), (4, 7, 4), (4, 8, 3), (5, 5, 3), (5, 6, 2), (3, 6, 6), (4, 5, 4),
          (5, 6, 3), (3, 9, 4)]        # (J, L, most blocks a big server holds with KV for one job)


def reference_rate(scenario: Scenario) -> float:
    """Largest total service rate GCA reaches over GBP-CR's every-chain placements (any c)."""
    from dataclasses import replace

    from .ctuning import tune_c
    fast = replace(scenario, workload=replace(scenario.workload, arrival_rate=1e-6, target_load=1e-9))
    tuning = tune_c(fast, objective="upper-bound", keep=10_000)
    return max((cand.bounds.total_rate for cand in tuning.top), default=0.0)


def tiny_instance(i: int) -> Scenario:
    """Instance ``i`` (seeded): J in 3-5, L in 5-10, a fast big and a slow small server type, light (even i) or
    heavy (odd i) load: 20 % / 80 % of ``reference_rate``."""
    J, L, big = TINY_SHAPES[i % len(TINY_SHAPES)]
    rng = np.random.default_rng(1000 + i)
    sm, sc = 1.0, 0.25
    rtts = [0.05, 0.2, 0.6]
    servers = []
    for j in range(J):
        fast = j == 0 or rng.random() < 0.4
        blocks = big if fast else max(1, big // 2)
        memory = blocks * (sm + sc) + sc * float(rng.integers(0, 2 * blocks + 1))
        servers.append({"id": f"{'hi' if fast else 'lo'}{j}", "memory_gb": memory,
                        "comm_time_s": float(rng.choice(rtts)), "block_time_s": 0.1 if fast else 0.25})
    doc = {"name": f"tiny-{i}", "model": {"num_blocks": L, "block_size_gb": sm, "cache_size_gb": sc},
           "servers": servers, "workload": {"arrival_rate": 1.0, "target_load": 0.7}}
    base = parse_scenario(doc)
    share = 0.2 if i % 2 == 0 else 0.8
    doc["workload"]["arrival_rate"] = share * reference_rate(base)
    return parse_scenario(doc)


