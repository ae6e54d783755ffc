"""How fast the batch-aware cache allocation is, and a digest of what it computes (issue 21).

For each scenario (bench/batching_profiles.py's clusters, with the curves): the paper's method run the way
``search`` runs it (``tune_c`` at the scenario's target load, then with every chain kept, ``keep=4``), timed
with every cache cleared; then every placement those runs allocated, allocated again one by one (GCA with the
batch-aware trim and refill, then ``loaded_bounds``, as ``search``'s scorer does), timed per allocation.

The digest (sha256 over every allocation's chains, capacities and bounds, floats in hex, and each tuning's best
c and objective) is what an optimisation must leave unchanged: run this on the old code and the new and compare.

    PYTHONPATH=$PWD .venv/bin/python bench/batch_allocation_speed.py [--repeat 3] [--dump FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import batching_profiles as bp  # noqa: E402
from machine import uptime  # noqa: E402

import solvers.batching as batching  # noqa: E402
import solvers.ctuning as ctuning  # noqa: E402
from solvers.batching import BatchModel  # noqa: E402
from solvers.ctuning import loaded_bounds, tune_c  # noqa: E402
from solvers.gca import gca  # noqa: E402
from solvers.scenario import parse_scenario  # noqa: E402
from solvers.topology import Placement  # noqa: E402

# (model, J, network, arrival rate): bench/results/batching.md's rows at 50 % and 80 % load
SCENARIOS = [("codellama-34b", 42, "wan", 38.881), ("codellama-34b", 42, "wan", 62.209),
             ("llama-2-70b", 42, "lan", 33.308), ("llama-2-70b", 42, "wan", 10.671),
             ("codellama-34b", 24, "lan", 35.640), ("llama-2-70b", 24, "wan", 8.650)]
KEEP = 4          # search.PREFIX_C
KEEP_ALL_LOAD = 1e-9


def fresh() -> None:
    """Forget every cache the batch model keeps (a search starts with none of them)."""
    if hasattr(batching, "_LAST"):      # the code before the models were kept by their servers
        batching._LAST = None
    if hasattr(batching, "_MODELS"):
        batching._MODELS.clear()


def scenario_of(model_key: str, size: int, network: str, rate: float):
    profile = bp.load_profile()
    model = bp.MODELS[model_key]
    timings = {g: bp.server_timing(profile[g, model.profile], bp.GPUS[g], model) for g in bp.GPUS}
    return parse_scenario(bp.cluster_doc(model_key, size, timings, True, rate, network))


def h(x: float) -> str:
    return float(x).hex()


def tuning_digest(result) -> list:
    best = result.best
    return [None if best is None else best.c, None if best is None else h(best.objective),
            [(cand.c, h(cand.objective)) for cand in result.top]]


def allocation_digest(chains, bounds) -> list:
    return [[(ch.hops, h(ch.service_time_s), ch.capacity) for ch in chains],
            [None if v is None else h(v) if isinstance(v, float) else v for v in
             (bounds.lower_s, bounds.upper_s, bounds.total_rate, bounds.total_capacity, bounds.load, bounds.stable)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each step (the median is reported; CPU "
                                                          "time of this process, steadier than wall time on a "
                                                          "shared machine)")
    ap.add_argument("--scenarios", type=int, nargs="+", help="indices into SCENARIOS (default: all)")
    ap.add_argument("--dump", help="write the digested values as JSON here")
    args = ap.parse_args()
    print(f"load before: {uptime()}")
    everything = []
    for i in (args.scenarios if args.scenarios is not None else range(len(SCENARIOS))):
        spec = SCENARIOS[i]
        aware = scenario_of(*spec)
        keep_all = replace(aware, workload=replace(aware.workload, target_load=KEEP_ALL_LOAD))
        placements: list[tuple[int, Placement]] = []
        real_gca = ctuning.gca

        def recording(scenario, placement, slots=None, max_chains=None):
            if slots is None and max_chains is None:
                placements.append((0 if scenario is aware else 1, placement))
            return real_gca(scenario, placement, slots, max_chains)

        tune_times, tunings = [], None
        for r in range(args.repeat):
            fresh()
            ctuning.gca = recording if r == 0 else real_gca
            try:
                t0 = time.process_time()
                floor = tune_c(aware)
                every = tune_c(keep_all, keep=KEEP)
                tune_times.append(time.process_time() - t0)
            finally:
                ctuning.gca = real_gca
            tunings = [tuning_digest(floor), tuning_digest(every)]
        alloc_times, allocations = [], None
        for _ in range(args.repeat):
            fresh()
            out = []
            t0 = time.process_time()
            for which, placement in placements:
                scenario = aware if which == 0 else keep_all
                chains = tuple(gca(scenario, placement))
                out.append((chains, loaded_bounds(BatchModel.of(scenario), chains, scenario.workload.arrival_rate)))
            alloc_times.append(time.process_time() - t0)
            allocations = [allocation_digest(c, b) for c, b in out]
        # each placement once (no allocation can be remembered from an earlier call): the cost of computing one
        distinct = list({placement.key(): (which, placement) for which, placement in placements}.values())
        once_times = []
        for _ in range(args.repeat):
            fresh()
            t0 = time.process_time()
            for which, placement in distinct:
                scenario = aware if which == 0 else keep_all
                chains = tuple(gca(scenario, placement))
                loaded_bounds(BatchModel.of(scenario), chains, scenario.workload.arrival_rate)
            once_times.append(time.process_time() - t0)
        record = {"scenario": list(spec), "tunings": tunings, "allocations": allocations}
        everything.append(record)
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
        per = statistics.median(alloc_times) / len(placements) * 1e3
        print(f"{spec[0]} J={spec[1]} {spec[2]} lambda={spec[3]}: paper's method (tune_c x2) CPU "
              f"{statistics.median(tune_times):.3f} s (runs: {', '.join(f'{t:.3f}' for t in tune_times)}); "
              f"{len(placements)} allocations at {per:.2f} ms CPU each; {len(distinct)} distinct ones at "
              f"{statistics.median(once_times) / len(distinct) * 1e3:.2f} ms CPU each; digest {digest}", flush=True)
    total = hashlib.sha256(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:16]
    print(f"all digests: {total}")
    print(f"load after: {uptime()}")
    if args.dump:
        Path(args.dump).write_text(json.dumps(everything, sort_keys=True, indent=0))


if __name__ == "__main__":
    main()
