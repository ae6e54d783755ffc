"""GCA: greedy cache allocation on any placement.

Repeatedly take the fastest source-to-sink chain among edges whose target
still has room for the blocks it would run, give it as many jobs as its
tightest server allows, subtract those slots, and drop every edge that no
longer fits.

Implementation.  An edge into server ``j`` from a tail ending at position
``e`` runs ``end_j - e`` blocks, so it fits iff ``e >= end_j - slots_j``: the
usable entry positions of ``j`` are an interval ``[lo_j, end_j)`` whose left
end only moves right as slots are used.  For each pair of positions ``(e, f)``
the servers ending at ``f`` that cover ``e`` are sorted once by the cost of
that hop; "dropping edges" then just advances a pointer past servers whose
interval no longer contains ``e``.  Each round is a dynamic programme over the
at most ``L + 1`` positions in increasing order (the graph is ordered by block
index, so no heap is needed).  Every round invalidates at least one
``(e, j)`` entry, so there are at most ``sum_j m_j`` rounds.

Under a batch slowdown (solvers/batching.py) a full slot is no longer free speed: the greedy's capacities
are then cut back by the marginal analysis of solvers/batch_allocation.py (the saturation rate
``sum c_k / T_k(b_full)`` and the predicted mean response at the scenario's arrival rate), and the slots that frees on servers that were not held back
on purpose are offered to GCA again.  With no curve anywhere the result is the greedy's, unchanged.  A
placement's batch-aware allocation is kept for the model's life (``GCA_MEMO_SIZE``), since a search asks for the
same ones several times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .batch_allocation import best_capacities, packed_response
from .batching import BatchModel
from .scenario import Scenario
from .topology import Placement, cache_slots


@dataclass(frozen=True)
class AllocatedChain:
    hops: tuple[tuple[int, int], ...]     # (server index, blocks run m_ij)
    service_time_s: float
    capacity: int


def gca(scenario: Scenario, placement: Placement, slots: list[int] | None = None,
        max_chains: int | None = None) -> list[AllocatedChain]:
    """Chains fastest first with their capacities; empty when the placement has no feasible chain."""
    model = BatchModel.of(scenario)
    memo = key = None
    if slots is None and max_chains is None and model.active:
        # the batch-aware allocation of a placement is asked for again and again within one search (c-tuning's
        # probes and its main pass, the every-chain c-tuning, the search's scorer): it depends on the servers (the
        # model's), the LLM and the arrival rate only, so it is kept for the model's life
        memo = model.memo.setdefault("gca", {})
        key = placement.key(), scenario.workload.arrival_rate, id(scenario.model)
        hit = memo.get(key)
        if hit is not None and hit[0] is scenario.model:
            return list(hit[1])
    slots = list(slots) if slots is not None else cache_slots(scenario, placement)
    chains = _greedy(scenario, placement, list(slots), max_chains)
    if max_chains is not None or not chains or not model.active:
        return chains
    chains = _batch_aware(scenario, placement, slots, chains, model)
    if memo is not None:
        if len(memo) >= GCA_MEMO_SIZE:
            memo.pop(next(iter(memo), None), None)      # FIFO (another thread may have taken it)
        memo[key] = (scenario.model, tuple(chains))
    return chains


GCA_MEMO_SIZE = 512            # allocations kept per model (FIFO): a search at J = 42 asks for some 100-300


REFILL_ROUNDS = 3


def _trimmed(model: BatchModel, chains: list[AllocatedChain], lam: float) -> list[AllocatedChain]:
    caps = best_capacities(model, chains, arrival_rate=lam)
    return [replace(ch, capacity=c) for ch, c in zip(chains, caps) if c > 0]


def _worse(model: BatchModel, chains: list[AllocatedChain], lam: float) -> tuple[float, float]:
    """Sort key, lower is better: the predicted mean response at ``lam``, then the saturation rate."""
    return packed_response(model, chains, [ch.capacity for ch in chains], lam), -model.saturation_rate(chains)


def _batch_aware(scenario: Scenario, placement: Placement, slots: list[int], greedy: list[AllocatedChain],
                 model: BatchModel) -> list[AllocatedChain]:
    """The greedy's chains at the capacities the marginal analysis keeps, then GCA again on the slots that
    frees, except on servers held back on purpose (a curve and fewer jobs than the greedy gave them)."""
    lam = scenario.workload.arrival_rate
    best = _trimmed(model, greedy, lam)
    score = _worse(model, best, lam)
    filled = model.occupancy(greedy)
    for _ in range(REFILL_ROUNDS):
        held = model.occupancy(best)
        left = list(slots)
        for ch in best:
            for j, m in ch.hops:
                left[j] -= m * ch.capacity
        for j, curve in enumerate(model.curves):
            if not curve.is_identity and held[j] < filled[j]:
                left[j] = 0
        more = _greedy(scenario, placement, left, None)
        if not more:
            break
        cand = _trimmed(model, best + more, lam)
        cand_score = _worse(model, cand, lam)
        if not cand_score < score:
            break
        best, score = cand, cand_score
        filled = [max(a, b) for a, b in zip(filled, model.occupancy(best + more))]
    return sorted(best, key=lambda ch: ch.service_time_s)


def _greedy(scenario: Scenario, placement: Placement, slots: list[int],
            max_chains: int | None) -> list[AllocatedChain]:
    """GCA itself (the batch-1 greedy); uses up ``slots``."""
    L = scenario.model.num_blocks
    comm = [s.comm_time_s for s in scenario.servers]
    per_block = [s.block_time_s for s in scenario.servers]
    used = placement.used()
    end = {j: placement.end(j) for j in used}

    positions = sorted({0} | set(end.values()))
    if positions[-1] != L:
        return []
    # candidates[(e, f)]: servers ending at f that can be entered at e, cheapest hop first
    candidates: dict[tuple[int, int], list[tuple[float, int]]] = {}
    position_set = set(positions)
    for j in used:
        f = end[j]
        for e in range(placement.start[j], f):
            if e in position_set:
                candidates.setdefault((e, f), []).append((comm[j] + per_block[j] * (f - e), j))
    for group in candidates.values():
        group.sort()
    # outgoing[e]: the (f, candidate list, pointer cell) pairs leaving position e
    outgoing: dict[int, list[tuple[int, list[tuple[float, int]], list[int]]]] = {e: [] for e in positions}
    for (e, f), group in sorted(candidates.items()):
        outgoing[e].append((f, group, [0]))
    lo = {j: max(placement.start[j], end[j] - slots[j]) for j in used}

    chains: list[AllocatedChain] = []
    inf = math.inf
    while max_chains is None or len(chains) < max_chains:
        dist = {e: inf for e in positions}
        dist[0] = 0.0
        back: dict[int, tuple[int, int]] = {}
        for e in positions:
            here = dist[e]
            if here == inf or e == L:
                continue
            for f, group, ptr in outgoing[e]:
                k = ptr[0]
                while k < len(group) and lo[group[k][1]] > e:
                    k += 1          # this server no longer has room when entered at e: drop the edge for good
                ptr[0] = k
                if k == len(group):
                    continue
                cost = here + group[k][0]
                if cost < dist[f]:
                    dist[f] = cost
                    back[f] = (e, group[k][1])
        if dist[L] == inf:
            break
        hops: list[tuple[int, int]] = []
        f = L
        while f != 0:
            e, j = back[f]
            hops.append((j, f - e))
            f = e
        hops.reverse()
        capacity = min(slots[j] // m for j, m in hops)
        for j, m in hops:
            slots[j] -= m * capacity
            lo[j] = max(placement.start[j], end[j] - slots[j])
        time = sum(comm[j] + per_block[j] * m for j, m in hops)
        chains.append(AllocatedChain(tuple(hops), time, capacity))
    return chains
