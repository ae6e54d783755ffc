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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    L = scenario.model.num_blocks
    slots = list(slots) if slots is not None else cache_slots(scenario, placement)
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
