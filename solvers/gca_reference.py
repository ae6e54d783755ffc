"""A literal transcription of GCA on the server-level routing DAG.

Slow on purpose (it builds every edge and runs Dijkstra with a heap each
round); it exists to cross-check ``gca.gca`` in tests and as the baseline the
benchmark measures the fast version against.
"""

from __future__ import annotations

import heapq
import math

from .gca import AllocatedChain
from .scenario import Scenario
from .topology import SOURCE, Placement, cache_slots, routing_edges


def gca_reference(scenario: Scenario, placement: Placement) -> list[AllocatedChain]:
    L = scenario.model.num_blocks
    sink = len(scenario.servers)
    slots = cache_slots(scenario, placement)
    edges = routing_edges(placement, L)
    cost = {j: (s.comm_time_s, s.block_time_s) for j, s in enumerate(scenario.servers)}
    alive = {(i, j): m for i, j, m in edges if j == sink or slots[j] >= m}
    chains: list[AllocatedChain] = []
    while True:
        out: dict[int, list[tuple[int, int]]] = {}
        for (i, j), m in alive.items():
            out.setdefault(i, []).append((j, m))
        dist = {SOURCE: 0.0}
        back: dict[int, tuple[int, int]] = {}
        heap = [(0.0, SOURCE)]
        while heap:
            d, i = heapq.heappop(heap)
            if d > dist.get(i, math.inf):
                continue
            for j, m in out.get(i, []):
                w = 0.0 if j == sink else cost[j][0] + cost[j][1] * m
                if d + w < dist.get(j, math.inf):
                    dist[j] = d + w
                    back[j] = (i, m)
                    heapq.heappush(heap, (d + w, j))
        if sink not in dist:
            return chains
        hops = []
        node = back[sink][0]
        while node != SOURCE:
            i, m = back[node]
            hops.append((node, m))
            node = i
        hops.reverse()
        capacity = min(slots[j] // m for j, m in hops)
        for j, m in hops:
            slots[j] -= m * capacity
        alive = {(i, j): m for (i, j), m in alive.items() if j == sink or slots[j] >= m}
        chains.append(AllocatedChain(tuple(hops), sum(cost[j][0] + cost[j][1] * m for j, m in hops), capacity))
