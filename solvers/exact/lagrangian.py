"""A cheap upper bound on the max-rate allocation over *every* chain, from the restricted LP's slot prices."""

from __future__ import annotations

import math
from typing import Sequence

from ..scenario import Scenario
from ..topology import Placement
from .allocation import restricted_lp
from .enumeration import ChainCandidate


def lagrangian_bound(scenario: Scenario, placement: Placement, chains: Sequence[ChainCandidate],
                     slots: Sequence[int], prices: Sequence[float] | None = None) -> float:
    """An upper bound on the max-rate allocation over every chain of the placement, enumerated or not.

    With slot prices ``y_j >= 0`` (the duals of the LP over the enumerated
    chains), any allocation has rate <= sum_j slots_j y_j + sum_k c_k (mu_k -
    sum_hops m y_j); each job uses exactly L slots, so sum_k c_k <= sum slots / L,
    and the reduced cost of every chain is at most 1/T_min - min_path(sum m y).
    Both path terms are shortest paths over block positions, so this is cheap.
    ``prices``: those duals when the caller has solved that LP already (column
    generation's last round), so it is not solved twice.
    """
    if prices is None:
        lp = restricted_lp(chains, slots)
        if lp is None:
            return math.inf
        prices = lp.prices
    y = prices
    L = scenario.model.num_blocks
    ends = sorted({0} | {placement.end(j) for j in placement.used()})
    fastest = {e: math.inf for e in ends}
    cheapest = {e: math.inf for e in ends}
    fastest[0] = cheapest[0] = 0.0
    for e in ends:
        if e == L or not math.isfinite(fastest[e]):
            continue
        for j in placement.used():
            f = placement.end(j)
            if placement.start[j] <= e < f and f - e <= slots[j]:
                sv = scenario.servers[j]
                fastest[f] = min(fastest[f], fastest[e] + sv.comm_time_s + sv.block_time_s * (f - e))
                cheapest[f] = min(cheapest[f], cheapest[e] + (f - e) * y[j])
    if not math.isfinite(fastest.get(L, math.inf)):
        return 0.0
    reduced = max(0.0, 1.0 / fastest[L] - cheapest[L])
    return sum(sl * yj for sl, yj in zip(slots, y)) + reduced * sum(slots) / L
