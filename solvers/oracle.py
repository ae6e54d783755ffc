"""Exhaustive search over every placement of a tiny instance: the test oracle for the heuristics.

Every server is either unused or holds one contiguous range ``[a, a+m)`` with
KV left for at least one job on each of its blocks.  Every combination that
covers all blocks is scored exactly as ``search`` and ``proposed`` score a
placement (GCA, then the JFFC lower bound on mean response time), and the best
is returned.  So the oracle's value is the optimum of that objective over
*all* placements, and a heuristic's gap to it is a gap in placement alone.

Cost: the product of the servers' range counts, e.g. 3 servers x 10 blocks
(~10^5 placements) or 5 servers x 6 blocks; servers with identical figures are
interchangeable, so only one ordering of their ranges is tried.  Refuses
instances past ``MAX_PLACEMENTS`` instead of running away.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .bounds import bounds_from_rates
from .gca import AllocatedChain, gca
from .scenario import Scenario
from .topology import Placement

MAX_PLACEMENTS = 3_000_000


@dataclass(frozen=True)
class OracleResult:
    value: float                         # best JFFC lower bound (inf: no stable placement)
    placement: Placement | None
    chains: tuple[AllocatedChain, ...]
    placements_scored: int
    placements_total: int


def server_options(scenario: Scenario) -> list[list[tuple[int, int]]]:
    """Per server: (start, count) ranges it may hold, (0, 0) = unused first."""
    model = scenario.model
    L = model.num_blocks
    out = []
    for s in scenario.servers:
        top = min(L, math.floor(s.memory_gb / (model.block_size_gb + model.cache_size_gb) + 1e-9))
        out.append([(0, 0)] + [(a, m) for m in range(1, top + 1) for a in range(L - m + 1)])
    return out


def placement_count(scenario: Scenario) -> int:
    return math.prod(len(o) for o in server_options(scenario))


def exhaustive_optimum(scenario: Scenario, max_placements: int = MAX_PLACEMENTS) -> OracleResult:
    L = scenario.model.num_blocks
    options = server_options(scenario)
    total = math.prod(len(o) for o in options)
    if total > max_placements:
        raise ValueError(f"{total} placements exceed the exhaustive search's limit of {max_placements}")
    full = (1 << L) - 1
    masks = [[((1 << m) - 1) << a for a, m in opts] for opts in options]
    # interchangeable servers (same memory and times) take their ranges in non-decreasing option order
    signature = [(s.memory_gb, s.comm_time_s, s.block_time_s) for s in scenario.servers]
    twin_of = [max((i for i in range(j) if signature[i] == signature[j]), default=-1) for j in range(len(options))]
    lam = scenario.workload.arrival_rate
    best = OracleResult(math.inf, None, (), 0, total)
    scored = 0
    for choice in itertools.product(*[range(len(o)) for o in options]):
        if any(t >= 0 and choice[t] > choice[j] for j, t in enumerate(twin_of)):
            continue
        cover = 0
        for j, k in enumerate(choice):
            cover |= masks[j][k]
        if cover != full:
            continue
        placement = Placement(tuple(options[j][k][0] for j, k in enumerate(choice)),
                              tuple(options[j][k][1] for j, k in enumerate(choice)))
        chains = gca(scenario, placement)
        scored += 1
        if not chains:
            continue
        b = bounds_from_rates([1 / ch.service_time_s for ch in chains], [ch.capacity for ch in chains], lam)
        if b.stable and b.lower_s < best.value:
            best = OracleResult(b.lower_s, placement, tuple(chains), 0, total)
    return OracleResult(best.value, best.placement, best.chains, scored, total)
