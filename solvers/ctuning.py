"""Choosing the cache reservation ``c``.

For every feasible ``c`` in ``1..c_max``: GBP-CR, GCA on its placement, and an
objective; keep the best.  Objectives:

- ``lower-bound`` (default): the JFFC lower bound on mean response time, which
  the authors found picks the ``c`` simulation confirms as best;
- ``upper-bound``: the JFFC upper bound (reserves too much cache);
- ``surrogate``: the lower bound on GBP-CR's own disjoint chains, each with
  capacity ``c`` (ignores what GCA adds; reserves too little cache).

Under a batch slowdown (solvers/batching.py) every objective scores chains at their time with every
planned slot busy, ``T_k(b_full)`` (GCA has already cut capacities that would lower the saturation
rate, solvers/gca.py); with no curve that is the one-job time, as before.  The pruning below stays exact:
a loaded time is never below the one-job time.

Speed: ``c`` values with the same block counts ``m_j(c)`` share one GBP-CR chain
sequence, and identical placements share one GCA run.  A ``c`` is skipped
without GCA when its fastest possible chain is already slower than the best
lower bound found, because a mean response time can never be below the
fastest chain's service time.

Cap on ``c``: where ``c_max`` is large (a 999 GB server with 0.001 GB of KV per
job has ``c_max`` near a million, and the sparse list of distinct plans then
runs to tens of thousands), a few probe values give an achievable objective
``U`` first, and every ``c`` whose *relaxed* fastest chain is already slower
than ``U`` is dropped before any GBP-CR or GCA work.  The relaxed fastest
chain (``relaxed_fastest_time``: shortest path over block boundaries, each hop
one server holding at most ``m_j(c)`` blocks, servers reusable) is a lower
bound on every objective and never decreases as ``c`` grows (``m_j(c)`` only
shrinks), so the cap is found by bisection and drops nothing that could win by
more than ``CAP_TOLERANCE`` (relative); the probes that reach ``U`` stay in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .batch_allocation import packed_response
from .batching import BatchModel
from .bounds import ResponseTimeBounds, bounds_from_rates
from .gbpcr import ChainSequence, GbpcrResult, ServerArrays, chain_sequence, truncate
from .gca import AllocatedChain, gca
from .scenario import Scenario
from .topology import Placement

OBJECTIVES = ("lower-bound", "upper-bound", "surrogate")
# what a caller may ask for: the closed-form objectives, or simulating the best few by the lower bound
C_OBJECTIVES = OBJECTIVES + ("simulation",)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Candidate:
    c: int
    placement: GbpcrResult
    chains: tuple[AllocatedChain, ...]
    bounds: ResponseTimeBounds
    objective: float

    def summary(self) -> dict[str, object]:
        return {"c": self.c, "gbpcr_chains": len(self.placement.chains), "gca_chains": len(self.chains),
                "total_service_rate": self.bounds.total_rate, "total_capacity": self.bounds.total_capacity,
                "stable": self.bounds.stable, "objective": self.objective if math.isfinite(self.objective) else None,
                **self.bounds.to_dict()}


@dataclass
class TuningResult:
    best: Candidate | None
    evaluated: list[dict[str, object]] = field(default_factory=list)
    top: list[Candidate] = field(default_factory=list)      # the ``keep`` best stable candidates, best first
    skipped: int = 0
    reason: str | None = None
    pruned: dict[int, float] = field(default_factory=dict)   # c -> its fastest chain's time (its objective is at least that)
    c_cap: int | None = None     # values of c above this were dropped: their relaxed fastest chain loses already


def evaluate(scenario: Scenario, result: GbpcrResult, objective: str,
             cache: dict | None = None) -> Candidate:
    """GCA and bounds for one GBP-CR placement."""
    key = result.placement.key()
    if cache is not None and key in cache:
        chains = cache[key]
    else:
        chains = tuple(gca(scenario, result.placement))
        if cache is not None:
            cache[key] = chains
    lam = scenario.workload.arrival_rate
    model = BatchModel.of(scenario)
    bounds = loaded_bounds(model, chains, lam)
    if objective == "lower-bound":
        value = bounds.lower_s
    elif objective == "upper-bound":
        value = bounds.upper_s
    elif objective == "surrogate":
        value = bounds_from_rates([1.0 / t for t in _surrogate_times(model, result)],
                                  [result.c] * len(result.chain_times), lam).lower_s
    else:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    return Candidate(result.c, result, chains, bounds, value)


def loaded_bounds(model: BatchModel, chains, arrival_rate: float) -> ResponseTimeBounds:
    """The JFFC bounds with each chain at its loaded time ``T_k(b_full)`` (total rate: the saturation rate).

    Under a batch slowdown ``lower_s`` is the packed prediction of batch_allocation.packed_response (the lower
    bound's birth-death chain with each state's rate at the occupancy it packs), an estimate rather than a
    bound; without a curve both are today's bounds, unchanged."""
    bounds = bounds_from_rates([1.0 / t for t in model.loaded_times(chains)], [ch.capacity for ch in chains],
                               arrival_rate)
    if not model.active or not bounds.stable:
        return bounds
    return replace(bounds, lower_s=packed_response(model, chains, [ch.capacity for ch in chains], arrival_rate))


def _surrogate_times(model: BatchModel, result: GbpcrResult) -> list[float]:
    """GBP-CR's disjoint chains, each holding ``c`` jobs: each server's occupancy is ``c``."""
    if not model.active:
        return list(result.chain_times)
    p = result.placement
    out = []
    for servers, t in zip(result.chains, result.chain_times):
        ends = [0] + [p.end(j) for j in servers]
        hops = [(j, ends[i + 1] - ends[i]) for i, j in enumerate(servers)]
        out.append(t + model.excess(hops, [result.c] * len(model.curves)))
    return out


def _fastest_chain_time(scenario: Scenario, placement: Placement, cache: dict) -> float:
    key = ("fastest",) + placement.key()
    if key not in cache:
        first = gca(scenario, placement, max_chains=1)
        cache[key] = first[0].service_time_s if first else math.inf
    return cache[key]


def _whole_sequence(sequence: ChainSequence, num_servers: int) -> Placement:
    """The placement of every server in the sequence (all chains and the tail)."""
    start, count = [0] * num_servers, [0] * num_servers
    for j in [j for ch in sequence.chains for j in ch] + list(sequence.tail):
        start[j], count[j] = int(sequence.starts[j]), int(sequence.counts[j])
    return Placement(tuple(start), tuple(count))


CAP_FROM_C_MAX = 1024          # below this c_max every c is cheap enough to try; above it the cap is computed
CAP_TOLERANCE = 1e-9


def relaxed_fastest_time(arrays: ServerArrays, counts: np.ndarray) -> float:
    """A lower bound on the service time of any chain in which server j runs at most ``counts[j]`` blocks.

    Shortest path over the block boundaries 0..L where a hop of k blocks on server j costs
    ``comm_j + k * block_j``; a server may be used more than once (the relaxation), so this is at most the
    time of any real chain and non-decreasing as the counts shrink.
    """
    L = arrays.num_blocks
    k = np.arange(1, L + 1)
    cost = arrays.comm_time_s[:, None] + arrays.block_time_s[:, None] * k[None, :]
    hop = np.where(counts[:, None] >= k[None, :], cost, np.inf).min(axis=0)     # hop[k - 1]: cheapest k-block hop
    dist = np.full(L + 1, np.inf)
    dist[0] = 0.0
    for e in range(1, L + 1):
        dist[e] = float(np.min(dist[e - 1::-1][:e] + hop[:e]))
    return float(dist[L])


def c_cap(arrays: ServerArrays, incumbent: float) -> int:
    """The largest ``c`` whose relaxed fastest chain is not slower than ``incumbent`` (0 if none)."""
    lo, hi = 0, arrays.max_reservation()
    while lo < hi:                      # invariant: every c <= lo qualifies (c = 0 trivially)
        mid = (lo + hi + 1) // 2
        if relaxed_fastest_time(arrays, arrays.blocks_for(mid)) <= incumbent:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _probe_incumbent(scenario: Scenario, arrays: ServerArrays, objective: str, keep: int,
                     penalty: Callable[[Placement], float] | None) -> tuple[float, list[int]]:
    """The keep-th best objective over c = 1, 2, 4, ... (stable plans only; inf if fewer than keep) and the
    probes that reach it."""
    w = scenario.workload
    J, L = len(scenario.servers), scenario.model.num_blocks
    values = []
    c = 1
    while c <= arrays.max_reservation():
        result = truncate(chain_sequence(arrays, arrays.blocks_for(c)), c, w.arrival_rate, w.target_load, J, L)
        if result.feasible:
            cand = evaluate(scenario, result, objective)
            if cand.bounds.stable and math.isfinite(cand.objective):
                values.append((cand.objective + (penalty(result.placement) if penalty is not None else 0.0), c))
        c *= 2
    values.sort()
    if len(values) < keep:
        return math.inf, []
    return values[keep - 1][0], [c for _, c in values[:keep]]


def tune_c(scenario: Scenario, objective: str = "lower-bound", c_values: list[int] | None = None,
           progress: Progress | None = None, deadline: float | None = None,
           penalty: Callable[[Placement], float] | None = None, keep: int = 1) -> TuningResult:
    """Best ``c`` by ``objective`` (+ ``penalty(placement)``, a non-negative extra cost such as switching).

    ``keep`` > 1 also returns the ``keep`` best candidates in ``top``.  Pruning
    stays exact with a penalty (the objective is still at least the fastest
    chain's time) and with ``keep`` (it compares against the keep-th best).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    arrays = ServerArrays.from_scenario(scenario)
    c_max = arrays.max_reservation()
    w = scenario.workload
    J, L = len(scenario.servers), scenario.model.num_blocks
    cap = None
    if c_values is None:
        probes: list[int] = []
        if c_max > CAP_FROM_C_MAX:
            incumbent, probes = _probe_incumbent(scenario, arrays, objective, keep, penalty)
            if math.isfinite(incumbent):
                # a relative tolerance: a c dropped here could beat the incumbent by at most 1e-9 of it
                cap = max(1, c_cap(arrays, incumbent * (1.0 - CAP_TOLERANCE)))
        c_values = sorted(set(candidate_reservations(arrays, w.arrival_rate, w.target_load, c_cap=cap,
                                                     deadline=deadline)) | set(probes))

    sequences: dict[bytes, ChainSequence] = {}
    pending: list[tuple[int, bytes]] = []         # (c, key of its block counts) for every feasible c
    for c in c_values:
        counts = arrays.blocks_for(c)
        key = counts.tobytes()
        if key not in sequences:
            sequences[key] = chain_sequence(arrays, counts)
        if sequences[key].feasible:
            pending.append((c, key))

    out = TuningResult(best=None, c_cap=cap)
    if not pending:
        out.reason = _memory_reason(arrays)
        return out
    cache: dict = {}
    wholes: dict[bytes, float] = {}              # block counts -> fastest chain over their whole sequence
    # most promising first (fastest GBP-CR chain), so pruning bites early
    pending.sort(key=lambda item: (sequences[item[1]].chain_times[0], item[0]))
    for done, (c, key) in enumerate(pending):
        if deadline is not None and time.monotonic() > deadline:
            out.reason = f"time limit reached after evaluating {done} of {len(pending)} values of c"
            break
        if progress is not None and done % 8 == 0:
            progress(done / len(pending), f"c-tuning: {done}/{len(pending)} values of c")
        sequence = sequences[key]
        prunable = objective == "lower-bound" and len(out.top) >= keep and math.isfinite(out.top[-1].objective)
        if prunable:
            # first a bound shared by every c with these block counts: the fastest chain over the whole
            # sequence (every chain GBP-CR can form, tail included) is at most the fastest chain of any
            # truncation of it, whose servers are a subset with the same ranges
            if key not in wholes:
                wholes[key] = _fastest_chain_time(scenario, _whole_sequence(sequence, J), cache)
            fastest = wholes[key]
            if fastest >= out.top[-1].objective:
                out.skipped += 1
                out.pruned[c] = fastest
                continue
        result = truncate(sequence, c, w.arrival_rate, w.target_load, J, L)
        if prunable:
            fastest = _fastest_chain_time(scenario, result.placement, cache)
            if fastest >= out.top[-1].objective:
                out.skipped += 1
                out.pruned[c] = fastest
                continue
        cand = evaluate(scenario, result, objective, cache)
        if penalty is not None:
            extra_cost = penalty(result.placement)
            cand = Candidate(cand.c, cand.placement, cand.chains, cand.bounds, cand.objective + extra_cost)
        out.evaluated.append(cand.summary())
        if cand.bounds.stable:
            out.top.append(cand)
            out.top.sort(key=lambda cd: (cd.objective, cd.c))
            del out.top[keep:]
            out.best = out.top[0]
    out.evaluated.sort(key=lambda d: d["c"])
    if out.best is None and out.reason is None:
        top = max((d["total_service_rate"] for d in out.evaluated), default=0.0)
        out.reason = (f"arrival rate {w.arrival_rate:g} req/s is more than any plan serves: the largest total "
                      f"service rate over all c is {top:.4g} req/s")
    return out


DENSE_C_LIMIT = 4096


def candidate_reservations(arrays: ServerArrays, arrival_rate: float, target_load: float,
                           c_cap: int | None = None, deadline: float | None = None) -> list[int]:
    """Every ``c`` in ``1..c_max`` when that is at most ``DENSE_C_LIMIT`` values, else one per distinct plan.

    ``c_cap`` (see ``c_cap``) ends the range early; past ``deadline`` the pieces not reached yet are left out.

    One huge server (100,000 GB) makes ``c_max`` about a million.  GBP-CR's
    result depends on ``c`` only through the block counts ``m_j(c)`` (piecewise
    constant, changing where some ``m_j`` drops) and the number of chains kept
    (which changes where ``lambda / (rho_bar c)`` crosses a cumulative chain
    rate), so the smallest ``c`` of every such piece yields every distinct
    placement the full range would, with the same tie-break (smallest ``c``).
    """
    c_max = arrays.max_reservation()
    if c_cap is not None:
        c_max = min(c_max, c_cap)
    if c_max <= DENSE_C_LIMIT:
        return list(range(1, c_max + 1))
    L, s_m, s_c = arrays.num_blocks, arrays.block_size_gb, arrays.cache_size_gb
    m = np.arange(1, L + 1, dtype=float)
    memories = np.unique(arrays.memory_gb)
    # the last c at which a server still holds m blocks: (M / m - s_m) / s_c
    last = np.floor((memories[:, None] / m[None, :] - s_m) / s_c + 1e-9).ravel()
    points = {1} | {int(x) + 1 for x in last if 1 <= x < c_max}
    starts = sorted(points)
    out: set[int] = set()
    for i, lo in enumerate(starts):
        if deadline is not None and i % 64 == 0 and time.monotonic() > deadline:
            break
        hi = starts[i + 1] - 1 if i + 1 < len(starts) else c_max
        out.add(lo)
        seq = chain_sequence(arrays, arrays.blocks_for(lo))
        for rate in seq.cumulative_rate.tolist():
            c = math.ceil(arrival_rate / (target_load * rate) - 1e-12) if rate > 0 else hi + 1
            if lo < c <= hi:
                out.add(c)
    return sorted(out)


def _memory_reason(arrays: ServerArrays) -> str:
    held = int(arrays.blocks_for(1).sum())
    return (f"servers can hold {held} of "
            f"{arrays.num_blocks} blocks (each block needs {arrays.block_size_gb:g} GB plus "
            f"{arrays.cache_size_gb:g} GB of KV cache per job)")


def memory_shortfall(scenario: Scenario) -> str | None:
    """A message when even c = 1 cannot place all blocks, else None."""
    arrays = ServerArrays.from_scenario(scenario)
    if int(arrays.blocks_for(1).sum()) < arrays.num_blocks:
        return _memory_reason(arrays)
    return None
