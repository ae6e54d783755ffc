"""Placements and the routing topology they induce.

Server ``j`` holds blocks ``start_j .. start_j + count_j - 1``.  Server ``j`` may
follow server ``i`` in a chain iff ``start_j <= end_i <= end_j - 1`` (with
``end = start + count``) and then runs ``m_ij = end_j - end_i`` blocks.  A dummy
source has ``end = 0`` and a dummy sink sits at position ``L``.

Whether ``(i, j)`` is an edge, and what it costs, depends on ``i`` only through
``end_i``.  So every source-to-sink path is equally a walk over *block
positions* ``0 = e_0 < e_1 < ... < e_h = L`` choosing at each step a server that
ends at ``e_{k+1}`` and covers ``e_k``.  The solvers use that position graph
(at most L+1 nodes) instead of the server DAG (up to J^2 edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from .chains import Chain
from .scenario import Scenario

SOURCE = -1


@dataclass(frozen=True)
class Placement:
    """Per server (in scenario order): first block and number of blocks (0 = unused)."""
    start: tuple[int, ...]
    count: tuple[int, ...]

    def end(self, j: int) -> int:
        return self.start[j] + self.count[j]

    def used(self) -> list[int]:
        return [j for j, m in enumerate(self.count) if m > 0]

    def covers_all(self, num_blocks: int) -> bool:
        covered = [False] * num_blocks
        for j in self.used():
            for b in range(self.start[j], self.end(j)):
                covered[b] = True
        return all(covered)

    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.start, self.count


def cache_slots(scenario: Scenario, placement: Placement) -> list[int]:
    """KV slots per server left after its blocks: floor((M_j - s_m m_j) / s_c)."""
    return [s.cache_slots(m, scenario.model) for s, m in zip(scenario.servers, placement.count)]


def routing_edges(placement: Placement, num_blocks: int) -> list[tuple[int, int, int]]:
    """All edges ``(i, j, m_ij)`` of the routing DAG; ``i = SOURCE`` for the source, ``j = J`` the sink."""
    used = placement.used()
    sink = len(placement.count)
    tails = [(SOURCE, 0)] + [(i, placement.end(i)) for i in used]
    edges = []
    for i, e in tails:
        if e == num_blocks:
            edges.append((i, sink, 0))
            continue
        for j in used:
            if placement.start[j] <= e <= placement.end(j) - 1:
                edges.append((i, j, placement.end(j) - e))
    return edges


def enumerate_paths(placement: Placement, num_blocks: int, limit: int | None = None) -> Iterator[list[tuple[int, int]]]:
    """Source-to-sink paths as lists of ``(server, m_ij)`` hops, depth first, at most ``limit``."""
    used = placement.used()
    by_entry: dict[int, list[int]] = {}
    for j in used:
        for e in range(placement.start[j], placement.end(j)):
            by_entry.setdefault(e, []).append(j)
    emitted = 0
    stack: list[tuple[int, list[tuple[int, int]]]] = [(0, [])]
    while stack:
        e, hops = stack.pop()
        if e == num_blocks:
            yield hops
            emitted += 1
            if limit is not None and emitted >= limit:
                return
            continue
        for j in reversed(by_entry.get(e, [])):
            stack.append((placement.end(j), hops + [(j, placement.end(j) - e)]))


def make_chain(scenario: Scenario, hops: Sequence[tuple[int, int]], capacity: int) -> Chain:
    """A Chain from ``(server index, blocks run)`` hops, with its mean time and token coefficients."""
    servers = scenario.servers
    mean_in = scenario.workload.input_tokens
    mean_out = scenario.workload.output_tokens
    total = base = per_in = per_out = 0.0
    for j, m in hops:
        s = servers[j]
        total += s.comm_time_s + s.block_time_s * m
        t = s.timing
        base += t.comm_base_s + t.block_base_s * m
        per_in += t.comm_per_input_token_s + t.block_per_input_token_s * m
        per_out += t.comm_per_output_token_s + t.block_per_output_token_s * m
    if mean_in is None or mean_out is None:
        base, per_in, per_out = total, 0.0, 0.0
    return Chain(servers=tuple(servers[j].id for j, _ in hops), blocks=tuple(m for _, m in hops),
                 service_time_s=total, capacity=capacity,
                 base_s=base, per_input_token_s=per_in, per_output_token_s=per_out)
