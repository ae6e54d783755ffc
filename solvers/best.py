"""``best``: the proposed method followed by a local search on the placement, scored by the JFFC lower bound.

Why: GBP-CR builds the placement for one global reservation ``c`` and disjoint
chains, and only then does GCA look for cross chains; nothing revisits the
placement with the actual objective.  Here each of the few best ``c`` values
(by the lower bound, from the same c-tuning) seeds a first-improvement hill
climb over single-server moves:

- shift a server's range one or a few blocks left or right,
- grow or shrink it by one block at either end,
- drop a server (when the rest still covers the model),
- bring in an unused server with ``m_j(c)`` blocks ending at an existing
  chain boundary or at ``L``.

Before that, the placements GBP-CR builds for other target loads ``rho_bar``
join the start points.  GBP-CR stops adding chains once
``nu >= lambda / (rho_bar * c)``; at light load that leaves fast servers idle
and makes a small ``c`` (few hops, fast chains) look bad because it gets too
few chains.  ``rho_bar`` is only a means to an end, so each of
``TARGET_LOADS`` is tuned like the proposed method and scored by the same
bound (on the paper's grid at lambda = 0.2 this alone lowers the bound by
about 5 % wherever J >= 20).

Every neighbour is scored exactly as the proposed method scores a placement:
GCA, then the closed-form lower bound on mean response time (spec 2.4).  The
search starts from proposed's own plan and only accepts strict improvements,
so ``best`` is never worse than ``proposed`` by that bound; the plan says which
one won.  Cost: one GCA run per neighbour, bounded by ``time_limit_s``
(default 2 s).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace

from .algorithms import PlanOptions, register
from .bounds import bounds_from_rates
from .ctuning import memory_shortfall, tune_c
from .gbpcr import ServerArrays
from .gca import gca
from .plan import PlanResult
from .scenario import Scenario
from .topology import Placement, make_chain

DEFAULT_TIME_S = 2.0
SEEDS = 3                 # how many of the best start placements seed a search
TARGET_LOADS = (0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05)


def score(scenario: Scenario, placement: Placement, cache: dict) -> tuple[float, tuple]:
    """(lower bound, GCA chains) of a placement; inf when it has no chain or is unstable."""
    key = placement.key()
    if key not in cache:
        chains = tuple(gca(scenario, placement))
        if not chains:
            cache[key] = (math.inf, chains)
        else:
            b = bounds_from_rates([1 / ch.service_time_s for ch in chains], [ch.capacity for ch in chains],
                                  scenario.workload.arrival_rate)
            cache[key] = (b.lower_s if b.stable else math.inf, chains)
    return cache[key]


def neighbours(scenario: Scenario, placement: Placement, c: int, arrays: ServerArrays, rng: random.Random):
    L = scenario.model.num_blocks
    J = len(scenario.servers)
    max_blocks = [min(L, math.floor(s.memory_gb / scenario.model.block_size_gb + 1e-9)) for s in scenario.servers]
    start, count = list(placement.start), list(placement.count)
    ends = sorted({placement.end(j) for j in placement.used()} | {L})
    sized = arrays.blocks_for(c).tolist()
    moves = []
    for j in range(J):
        a, m = start[j], count[j]
        if m > 0:
            for d in (-1, 1, -3, 3):                                   # shift
                if 0 <= a + d and a + d + m <= L:
                    moves.append((j, a + d, m))
            if a > 0 and m + 1 <= max_blocks[j]:
                moves.append((j, a - 1, m + 1))                        # grow left
            if a + m < L and m + 1 <= max_blocks[j]:
                moves.append((j, a, m + 1))                            # grow right
            if m > 1:
                moves.append((j, a + 1, m - 1))                        # shrink left
                moves.append((j, a, m - 1))                            # shrink right
            moves.append((j, 0, 0))                                    # drop
        elif sized[j] > 0:
            m = int(sized[j])
            for f in ends:
                if f - m >= 0:
                    moves.append((j, f - m, m))                        # join, ending at a chain boundary
    rng.shuffle(moves)
    for j, a, m in moves:
        s2, c2 = start.copy(), count.copy()
        s2[j], c2[j] = (a, m) if m > 0 else (0, 0)
        yield Placement(tuple(s2), tuple(c2))


def local_search(scenario: Scenario, placement: Placement, c: int, deadline: float, cache: dict,
                 arrays: ServerArrays, seed: int) -> tuple[Placement, float, int]:
    rng = random.Random(seed)
    current, value = placement, score(scenario, placement, cache)[0]
    accepted = 0
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for cand in neighbours(scenario, current, c, arrays, rng):
            if time.monotonic() > deadline:
                break
            v = score(scenario, cand, cache)[0]
            if v < value * (1 - 1e-12):
                current, value, accepted, improved = cand, v, accepted + 1, True
                break
    return current, value, accepted


@register("best", "Proposed, then a local search on the placement scored by the JFFC lower bound "
          "(never worse than proposed by that bound)")
def best(scenario: Scenario, options: PlanOptions) -> PlanResult:
    name = "best"
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return PlanResult(name, False, shortfall)
    started = time.monotonic()
    budget = options.time_limit_s or DEFAULT_TIME_S
    tuning = tune_c(scenario, progress=options.progress)
    if tuning.best is None:
        return PlanResult(name, False, tuning.reason)
    arrays = ServerArrays.from_scenario(scenario)
    cache: dict = {}
    prop_placement = tuning.best.placement.placement
    prop_value = score(scenario, prop_placement, cache)[0]
    user_load = scenario.workload.target_load
    # start points: (lower bound, placement, c, target load, source), proposed's own first
    starts = [(prop_value, prop_placement, tuning.best.c, user_load, "proposed")]
    for rho in TARGET_LOADS:
        if rho == user_load:
            continue
        other = tune_c(replace(scenario, workload=replace(scenario.workload, target_load=rho)))
        if other.best is not None:
            placement = other.best.placement.placement
            starts.append((score(scenario, placement, cache)[0], placement, other.best.c, rho, "target-load"))
    starts.sort(key=lambda st: (st[0], st[4] != "proposed"))
    value0, placement0, c0, rho0, source0 = starts[0]
    winner = (value0, placement0, c0, rho0, source0)
    accepted = 0
    deadline = started + budget
    seeds = starts[:SEEDS]
    for i, (_, seed_placement, c, rho, _) in enumerate(seeds):
        # share what is left of the budget between the remaining seeds
        share = (deadline - time.monotonic()) / (len(seeds) - i)
        if share <= 0:
            break
        options.report(0.2 + 0.7 * i / len(seeds), f"{name}: local search from c = {c}, target load {rho:g}")
        placement, value, moves = local_search(scenario, seed_placement, int(c), time.monotonic() + share, cache,
                                               arrays, options.seed + i)
        accepted += moves
        if value < winner[0] * (1 - 1e-12):
            winner = (value, placement, int(c), rho, "local-search")
    value, placement, c, rho, source = winner
    chains = [make_chain(scenario, ch.hops, ch.capacity) for ch in score(scenario, placement, cache)[1]]
    extra = {"best": {"winner": source, "seed_c": c, "seed_target_load": rho, "proposed_c": tuning.best.c,
                      "proposed_response_time_lower_s": prop_value, "response_time_lower_s": value,
                      "improvement": (prop_value - value) / prop_value if math.isfinite(prop_value) else None,
                      "placements_evaluated": len(cache), "moves_accepted": accepted,
                      "search_time_s": time.monotonic() - started}}
    return PlanResult(name, True, c=c, placement=placement, chains=chains, dispatch="jffc", extra=extra)
