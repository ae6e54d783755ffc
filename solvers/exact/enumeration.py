"""Feasible chains of a placement, fastest first (best-first search over block positions)."""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Sequence

from ..scenario import Scenario
from ..topology import Placement, cache_slots

DEFAULT_CHAIN_LIMIT = 5_000
MAX_OPEN_PATHS = 400_000      # partial paths kept in the best-first heap (memory: ~ a few hundred MB at most)


@dataclass(frozen=True)
class ChainCandidate:
    hops: tuple[tuple[int, int], ...]      # (server index, blocks run)
    time_s: float

    @property
    def rate(self) -> float:
        return 1.0 / self.time_s


def _best_first(num_blocks: int, moves: dict[int, list[tuple[int, int, float]]], limit: int,
                distinct: bool, deadline: float | None = None) -> tuple[list[ChainCandidate], bool]:
    """Source-to-sink walks over block positions in increasing total time.

    ``moves[e]``: ``(server, next position, hop time)``.  The heuristic is the
    exact shortest remaining time ignoring ``distinct``, so it is consistent and
    walks come out in nondecreasing time; returns (walks, capped).
    """
    remaining = {num_blocks: 0.0}
    for e in range(num_blocks - 1, -1, -1):
        best = math.inf
        for _, f, t in moves.get(e, ()):
            best = min(best, t + remaining.get(f, math.inf))
        remaining[e] = best
    if not math.isfinite(remaining[0]):
        return [], False
    heap: list[tuple[float, int, float, int, tuple]] = [(remaining[0], 0, 0.0, 0, ())]
    counter = 1
    out: list[ChainCandidate] = []
    while heap:
        if len(heap) > MAX_OPEN_PATHS or (deadline is not None and counter % 256 == 0
                                          and time.monotonic() > deadline):
            return out, True          # bounded: never runs away in time or memory
        _, _, g, e, hops = heapq.heappop(heap)
        if e == num_blocks:
            out.append(ChainCandidate(hops, g))
            if len(out) >= limit:
                return out, bool(heap)
            continue
        for j, f, t in moves.get(e, ()):
            h = remaining.get(f, math.inf)
            if not math.isfinite(h) or (distinct and any(j == i for i, _ in hops)):
                continue
            heapq.heappush(heap, (g + t + h, counter, g + t, f, hops + ((j, f - e),)))
            counter += 1
    return out, False


def placement_chains(scenario: Scenario, placement: Placement, slots: Sequence[int] | None = None,
                     limit: int = DEFAULT_CHAIN_LIMIT, deadline: float | None = None
                     ) -> tuple[list[ChainCandidate], bool]:
    """Routing paths of a placement that can carry at least one job, fastest first (at most ``limit``)."""
    slots = list(slots) if slots is not None else cache_slots(scenario, placement)
    moves: dict[int, list[tuple[int, int, float]]] = {}
    for j in placement.used():
        s = scenario.servers[j]
        f = placement.end(j)
        for e in range(placement.start[j], f):
            if f - e <= slots[j]:          # otherwise the hop can never hold a job
                moves.setdefault(e, []).append((j, f, s.comm_time_s + s.block_time_s * (f - e)))
    # each server has one end, so a path never revisits a server: no distinctness check needed
    return _best_first(scenario.model.num_blocks, moves, limit, distinct=False, deadline=deadline)
