"""``search`` (the default; ``best`` is an alias): the strongest plan we can compute in the time budget.

It starts from the paper's method (``proposed``) and keeps that plan unless
it finds one with a strictly lower JFFC lower bound on mean response time, so
it is never worse than ``proposed`` by that bound.  Everything is scored the
same way: GCA on the placement, then the closed-form lower bound.

1. **Keep every chain.**  GBP-CR stops adding chains once
   ``nu >= lambda / (rho_bar c)``; at light load that leaves most servers idle
   and forces a large ``c``.  Here GBP-CR forms every chain it can for each
   ``c``, and the number of chains kept is chosen together with ``c``: for the
   most promising values of ``c`` several prefixes (1, 2, 4, ... chains, all of
   them) are scored.  The target load ``rho_bar`` is used only as a stability
   check: a plan whose load ``lambda / nu`` exceeds it is taken only when no
   candidate meets it at a bound no higher than the floor's (the plan says so):
   the guarantee below comes first.  When the few ``c`` kept all miss it,
   the best ``c`` that c-tuning scored at the target joins the candidates if
   its bound is not above proposed's; otherwise the plan names that ``c``.
2. **Local search** from the best few candidates, first improvement, on moves
   of one server (shift, grow, shrink, drop, bring in an unused one, re-size it
   to the block count of another ``c`` so that one fast server's range spans
   several chains: overlapping placements) and of two servers at once (move
   the boundary between consecutive servers, swap two servers' ranges).
3. **Exact allocation** (the ``optimal-allocation`` MIP, max total rate) on the
   final placement when its chains are few enough to enumerate, kept only if
   it lowers the bound.

Under a batch slowdown (solvers/batching.py) every bound above is the batch model's prediction, and after the
paper's method a batch-1 pass runs: this search on the scenario without the curves, with the whole budget, as a
batch-1 ``search`` of its own would have it.  Its plans join the candidates as it allocated them and re-allocated
for the batch model, and they are floors too: the plan is never predicted slower than the best of them
(``search_steps.batch1``; docs/algorithms.md).  The batch-aware phases then get the budget the pass did not
count against them, so under a batch slowdown the run takes up to twice the budget; where the limit is a wall
clock for the whole call (``PlanOptions.extra[WALL_CLOCK]``: a service job's), the pass gets half of what the
paper's method left instead.

The budget (``time_limit_s``, default ``DEFAULT_BUDGET_S``) bounds the whole
wall clock of the algorithm, the paper's method included: phases 1-3 stop at
``start + budget`` (plus the batch-1 pass's time under a batch slowdown).  The proposed plan is the floor of the guarantee, so it is
always computed in full (its c-tuning is pruned: a few tenths of a second at
J = 1,000); when it alone uses up the budget, its plan is returned as is and
marked cut short.  The overrun past the budget is at most one scoring (one GCA
run on one placement) or the remainder of the exact allocation, whose own time
limit is what is left of the budget.  The plan's ``search`` object says how
long it searched and whether the budget cut it short; ``search_steps.proposed_s``
how long the paper's method took.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace

from .algorithms import PlanOptions, register
from .batch_allocation import batch_extras, best_capacities
from .batching import NO_SLOWDOWN, BatchModel
from .ctuning import loaded_bounds, memory_shortfall, tune_c
from .gbpcr import ServerArrays, chain_sequence, gbpcr
from .gca import gca
from .plan import PlanResult
from .scenario import Scenario
from .topology import Placement, cache_slots, make_chain

DEFAULT_BUDGET_S = 1.0
SEEDS = 3                    # start placements that get a local search
PREFIX_C = 4                 # values of c whose chain-count prefixes are scored
EXACT_MAX_CHAINS = 400       # exact allocation only when the placement has at most this many chains
EXACT_TIME_S = 0.2
FULL_NEIGHBOURHOOD = 3000    # below this many (server, range) pairs every range of every server is a move
KICKS_PER_SERVER = 12        # iterated local search: random kicks without improvement before it stops
MAX_BOUNDARY_PARTNERS = 64  # two-server boundary moves per server at most (J <= 64 is never sampled)
LAZY_SHUFFLE_FROM = 50_000  # neighbourhoods longer than this are shuffled lazily (the paper grid's are shorter)
KEEP_ALL_LOAD = 1e-9         # a target load so small that GBP-CR's stopping rule never fires
WALL_CLOCK = "wall_clock_limit"   # PlanOptions.extra: time_limit_s bounds the whole call, the batch-1 pass included
BATCH1_LABELS = {"proposed": "batch-1 proposed", "all chains": "batch-1 all chains", "winner": "batch-1 search"}


@dataclass
class Scored:
    value: float             # JFFC lower bound (inf: no chain or unstable)
    load: float
    chains: tuple


class Scorer:
    """GCA + lower bound of a placement, memoised (chains at their loaded times under a batch slowdown)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.lam = scenario.workload.arrival_rate
        self.model = BatchModel.of(scenario)
        self.cache: dict = {}

    def __call__(self, placement: Placement) -> Scored:
        key = placement.key()
        hit = self.cache.get(key)
        if hit is None:
            chains = tuple(gca(self.scenario, placement))
            hit = self.of_chains(chains)
            self.cache[key] = hit
        return hit

    def of_chains(self, chains) -> Scored:
        if not chains:
            return Scored(math.inf, math.inf, chains)
        b = loaded_bounds(self.model, chains, self.lam)
        return Scored(b.lower_s if b.stable else math.inf, b.load, chains)


def prefix_placement(arrays: ServerArrays, c: int, k: int | None, num_servers: int) -> Placement | None:
    """GBP-CR's placement for ``c`` keeping its first ``k`` complete chains (None: all, with the tail)."""
    seq = chain_sequence(arrays, arrays.blocks_for(c))
    if not seq.feasible:
        return None
    members = [j for ch in seq.chains[:k] for j in ch] if k is not None else \
        [j for ch in seq.chains for j in ch] + list(seq.tail)
    start, count = [0] * num_servers, [0] * num_servers
    for j in members:
        start[j], count[j] = int(seq.starts[j]), int(seq.counts[j])
    return Placement(tuple(start), tuple(count))


def _best_c_meeting_target(tuning, lam: float, rho_bar: float) -> dict | None:
    """c-tuning's row of the c with the lowest objective among those whose load lam / nu meets the target."""
    met = [row for row in tuning.evaluated if row.get("stable") and row.get("objective") is not None
           and lam <= rho_bar * row["total_service_rate"]]
    return min(met, key=lambda row: row["objective"]) if met else None


def _slower_meeting(found: list, rho_bar: float, guard: float) -> tuple[str, float, float] | None:
    """The best candidate that meets the target load, when every such one is predicted slower than the floor
    (source, load, value); None when none meets it."""
    meeting = [(sc.value, sc.load, src) for sc, _, _, src in found if sc.load <= rho_bar and math.isfinite(sc.value)]
    if not meeting:
        return None
    value, load, src = min(meeting)
    return (src, load, value) if value > guard * (1 + 1e-12) else None


def _target_note(target_met: list[tuple[str, dict]], lam: float, floor_value: float,
                 slower: tuple[str, float, float] | None = None) -> str:
    """Why a plan above the target load was kept: no c met it, or those that did cost more than the floor."""
    if slower is not None and (not target_met or slower[2] <= min(r["objective"] for _, r in target_met)):
        src, load, value = slower
        return (f"(the best candidate that meets it, {src} at load {load:.3g}, is predicted at {value:.4g} s, above "
                f"the floor this search never exceeds, {floor_value:.4g} s)")
    if not target_met:
        return "(no candidate met it, nor any c that c-tuning scored)"
    family, row = min(target_met, key=lambda item: item[1]["objective"])
    return (f"(c = {row['c']} of {family} GBP-CR meets it, at load {lam / row['total_service_rate']:.3g}, but its "
            f"lower bound {row['objective']:.4g} s is above the paper's method's {floor_value:.4g} s, which this "
            "search never exceeds)")


def chain_counts(arrays: ServerArrays, c: int) -> int:
    return len(chain_sequence(arrays, arrays.blocks_for(c)).chains)


def _lazy_shuffle(items: list, rng: random.Random):
    """The items in a uniformly random order, drawn one at a time (Fisher-Yates as it goes): a first-improvement
    climb usually stops after a few, and shuffling 150,000 moves up front takes 0.15-0.3 s at J = 1,000."""
    n = len(items)
    for i in range(n):
        k = rng.randrange(i, n)
        items[i], items[k] = items[k], items[i]
        yield items[i]


def neighbours(scenario: Scenario, placement: Placement, sized: list[list[int]], rng: random.Random,
               max_blocks: list[int], deadline: float | None = None):
    """Placements one or two servers away (shuffled); none at all when ``deadline`` passes while listing them
    (at J = 1,000 listing takes about 0.2 s, longer than scoring a few placements)."""
    L = scenario.model.num_blocks
    J = len(scenario.servers)
    start, count = list(placement.start), list(placement.count)
    used = placement.used()
    ends = sorted({placement.end(j) for j in used} | {L})
    starts = sorted({placement.start[j] for j in used} | {0})
    moves: list[tuple[tuple[int, int, int], ...]] = []
    small = sum(max_blocks[j] * (L - (max_blocks[j] - 1) / 2) for j in range(J)) <= FULL_NEIGHBOURHOOD
    for j in range(J):
        if deadline is not None and j % 64 == 63 and time.monotonic() > deadline:
            return
        a, m = start[j], count[j]
        if small:                                                              # every range of one server
            moves.extend(((j, a2, m2),) for m2 in range(0, max_blocks[j] + 1)
                         for a2 in (range(L - m2 + 1) if m2 else (0,)) if (a2, m2) != (a, m))
        elif m > 0:
            for d in (-1, 1, -2, 2, -4, 4):                                    # shift
                if 0 <= a + d and a + d + m <= L:
                    moves.append(((j, a + d, m),))
            if a > 0 and m + 1 <= max_blocks[j]:
                moves.append(((j, a - 1, m + 1),))                             # grow left
            if a + m < L and m + 1 <= max_blocks[j]:
                moves.append(((j, a, m + 1),))                                 # grow right
            if m > 1:
                moves.append(((j, a + 1, m - 1),))                             # shrink left
                moves.append(((j, a, m - 1),))                                 # shrink right
            moves.append(((j, 0, 0),))                                         # drop
            for m2 in sized[j]:                                                # re-size to another c's count
                if m2 != m and m2 > 0:
                    for a2 in (a + m - m2, a):
                        a2 = min(max(0, a2), L - m2)
                        moves.append(((j, a2, m2),))
        else:
            for m2 in sized[j][:3]:
                if m2 <= 0:
                    continue
                for f in ends:                                                 # join ending at a boundary
                    if f - m2 >= 0:
                        moves.append(((j, f - m2, m2),))
                for a2 in starts:                                              # ... or starting at one
                    if a2 + m2 <= L:
                        moves.append(((j, a2, m2),))
    # two servers: move the boundary between a server and the one entered at its end
    by_start: dict[int, list[int]] = {}
    for j in used:
        by_start.setdefault(start[j], []).append(j)
    for n, i in enumerate(used):
        if deadline is not None and n % 64 == 63 and time.monotonic() > deadline:
            return
        e = placement.end(i)
        partners = by_start.get(e, ())
        if len(partners) > MAX_BOUNDARY_PARTNERS:        # thousands of servers sharing one start: sample them
            partners = rng.sample(partners, MAX_BOUNDARY_PARTNERS)
        for j in partners:
            for d in (-2, -1, 1, 2):
                mi, mj = count[i] + d, count[j] - d
                if 1 <= mi <= max_blocks[i] and 1 <= mj <= max_blocks[j]:
                    moves.append(((i, start[i], mi), (j, start[j] + d, mj)))
    # two servers: swap ranges (sampled: all pairs would be J^2)
    if J >= 2:
        for _ in range(min(4 * J, J * (J - 1) // 2)):
            i, j = rng.sample(range(J), 2)
            if (count[i], start[i]) == (count[j], start[j]):
                continue
            if count[i] <= max_blocks[j] and count[j] <= max_blocks[i]:
                moves.append(((i, start[j], count[j]), (j, start[i], count[i])))
    if deadline is not None and time.monotonic() > deadline:
        return
    if len(moves) <= LAZY_SHUFFLE_FROM:
        rng.shuffle(moves)
        order = iter(moves)
    else:
        order = _lazy_shuffle(moves, rng)
    for move in order:
        s2, c2 = start.copy(), count.copy()
        for j, a, m in move:
            s2[j], c2[j] = (a, m) if m > 0 else (0, 0)
        yield Placement(tuple(s2), tuple(c2))


def local_search(scenario: Scenario, placement: Placement, score: Scorer, deadline: float, sized, max_blocks,
                 seed: int) -> tuple[Placement, float, int, bool]:
    """First-improvement hill climb; returns (placement, bound, moves accepted, stopped by the deadline)."""
    rng = random.Random(seed)
    current, value = placement, score(placement).value
    accepted = 0
    while True:
        improved = False
        for cand in neighbours(scenario, current, sized, rng, max_blocks, deadline):
            if time.monotonic() > deadline:
                return current, value, accepted, True
            v = score(cand).value
            if v < value * (1 - 1e-12):
                current, value, accepted, improved = cand, v, accepted + 1, True
                break
        if not improved:
            # an empty or unfinished neighbourhood listing also ends here when the deadline passed
            return current, value, accepted, time.monotonic() > deadline


def exact_allocation(scenario: Scenario, placement: Placement, score: Scorer, hint_chains,
                     time_limit_s: float = EXACT_TIME_S) -> Scored | None:
    """The max-rate MIP on the placement's chains when they are few; None when too many or no better."""
    from .exact import ChainCandidate, allocate, placement_chains
    slots = cache_slots(scenario, placement)
    chains, capped = placement_chains(scenario, placement, slots, EXACT_MAX_CHAINS)
    if capped or not chains:
        return None
    index = {ch.hops: k for k, ch in enumerate(chains)}
    hint = [0] * len(chains)
    for g in hint_chains:
        if g.hops not in index:
            index[g.hops] = len(chains)
            chains.append(ChainCandidate(g.hops, g.service_time_s))
            hint.append(0)
        hint[index[g.hops]] = g.capacity
    out = allocate(chains, slots, "max-rate", None, max(time_limit_s, 1e-3), hint)
    if not out.values:
        return None
    from .gca import AllocatedChain
    allocated = [AllocatedChain(ch.hops, ch.time_s, v) for ch, v in zip(chains, out.values) if v > 0]
    if score.model.active:       # the MIP fills every slot (batch-1 rates): cut back what slows the plan
        allocated = [replace(ch, capacity=c) for ch, c in zip(allocated, best_capacities(score.model, allocated))
                     if c > 0]
    allocated = tuple(sorted(allocated, key=lambda ch: ch.service_time_s))
    return score.of_chains(allocated)


def without_curves(scenario: Scenario) -> Scenario:
    """The scenario with every server at its one-job speed whatever it holds (the batch-1 model)."""
    return scenario.with_servers(tuple(replace(s, batch_slowdown=NO_SLOWDOWN) for s in scenario.servers))


def run_search(scenario: Scenario, options: PlanOptions, name: str) -> PlanResult:
    return _run_search(scenario, options, name)[0]


def _run_search(scenario: Scenario, options: PlanOptions, name: str) -> tuple[PlanResult, list[tuple]]:
    """The plan, and the plans worth scoring under another model: (chains, placement, c, source) of the paper's
    method, the every-chain c-tuning's best few and the winner (the batch-aware search scores a batch-1 pass's)."""
    if options.c is not None or options.c_objective != "lower-bound":
        # a fixed c or another c objective asks for the paper's method with that choice: the search itself
        # only scores by the lower bound
        from .proposed import proposed
        result = proposed(scenario, options)
        why = (f"c fixed at {options.c}" if options.c is not None else f"c objective {options.c_objective}")
        result.extra["search"]["detail"] = (f"{why}: ran the paper's method with it (the local search scores "
                                            "plans by the lower bound only); " + result.extra["search"]["detail"])
        return replace(result, algorithm=name), []
    started = time.monotonic()
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return PlanResult(name, False, shortfall), []
    budget = options.time_limit_s if options.time_limit_s is not None else DEFAULT_BUDGET_S
    w = scenario.workload
    rho_bar, lam = w.target_load, w.arrival_rate
    J = len(scenario.servers)
    # the budget bounds the whole run, the paper's method included
    deadline = started + budget
    # the paper's method in full: the floor this search never goes below
    floor = tune_c(scenario, progress=options.progress)
    floor_s = time.monotonic() - started
    if floor.best is None:
        return PlanResult(name, False, floor.reason, extra={"search": {
            "searched_s": time.monotonic() - started, "budget_s": budget, "cut_short": False,
            "detail": "the paper's method found no stable plan; nothing to improve on"}}), []
    # the floor always runs in full (it is the guarantee); when it alone spent the budget, nothing more is tried
    cut_short = time.monotonic() >= deadline
    score = Scorer(scenario)
    arrays = ServerArrays.from_scenario(scenario)
    prop_placement = floor.best.placement.placement
    prop = score(prop_placement)
    # (score, placement, c, source)
    cands: list[tuple[Scored, Placement, int, str]] = [(prop, prop_placement, floor.best.c, "proposed")]
    notable = [(floor.best.chains, prop_placement, floor.best.c, "proposed")]

    # 0. under a batch slowdown: the batch-1 search (every server at its one-job speed) in part of the budget, its
    # plans judged here under the batch model.  Its cheap scoring explores far more placements in the same time,
    # and its plans, exactly as it allocates them, join the candidates: this search then never returns a plan the
    # batch model predicts slower than the batch-1 pass's (nor than the batch-1 paper's method, always run in full)
    batch1 = None
    if score.model.active:
        options.report(0.2, f"{name}: the batch-1 pass")
        # the whole budget, as a batch-1 `search` run on its own would have it: the plan must not lose to that.
        # Where the limit is a wall clock for the whole call (a service job's), the pass gets half of what is left.
        wall_clock = bool(options.extra.get(WALL_CLOCK))
        batch1_budget = max(0.0, deadline - time.monotonic()) * 0.5 if wall_clock else budget
        b1_started = time.monotonic()
        b1_result, b1_plans = _run_search(without_curves(scenario),
                                          replace(options, time_limit_s=batch1_budget, progress=None), name)
        if not wall_clock:   # the batch-aware phases keep the time they had: up to twice the budget in all
            deadline += time.monotonic() - b1_started
        batch1 = {"budget_s": batch1_budget, "searched_s": time.monotonic() - b1_started,
                  "winner": (b1_result.extra.get("search_steps") or {}).get("winner"), "response_time_s": None}
        b1_best = math.inf
        for chains, placement, c, source in b1_plans:
            label = BATCH1_LABELS[source]
            as_planned = score.of_chains(tuple(sorted(chains, key=lambda ch: ch.service_time_s)))
            cands.append((as_planned, placement, c, label))
            b1_best = min(b1_best, as_planned.value)
            if source == "winner":
                batch1["response_time_s"] = as_planned.value
            if time.monotonic() < deadline:          # the same layout, its KV slots allocated for the batch model
                cands.append((score(placement), placement, c, label + ", re-allocated"))
        batch1["best_response_time_s"] = b1_best
        cut_short = cut_short or time.monotonic() >= deadline

    # 1. keep every chain, c and the number kept chosen together
    options.report(0.3, f"{name}: keeping every chain, tuning c")
    keep_all_scenario = replace(scenario, workload=replace(w, target_load=KEEP_ALL_LOAD))
    keep_all = tune_c(keep_all_scenario, deadline=deadline, keep=PREFIX_C) if not cut_short else None
    if keep_all is None or (keep_all.reason and keep_all.reason.startswith("time limit")):
        cut_short = True
    for cand in (keep_all.top if keep_all is not None else ()):
        placement = cand.placement.placement
        cands.append((score(placement), placement, cand.c, "all chains"))
        notable.append((cand.chains, placement, cand.c, "all chains"))
    for cand in (keep_all.top if keep_all is not None else ()):
        K = chain_counts(arrays, cand.c)
        k = 1
        while k < K and not cut_short:
            if time.monotonic() > deadline:
                cut_short = True
                break
            placement = prefix_placement(arrays, cand.c, k, J)
            if placement is not None:
                cands.append((score(placement), placement, cand.c, f"first {k} chains"))
            k *= 2

    # the target load ranks first, yet the few c kept above are the best by the bound and may all miss it while
    # another c that c-tuning scored meets it: the best such c of each family joins the candidates when its bound
    # keeps the guarantee (not above proposed's); otherwise the plan says which c met it and at what cost
    target_met: list[tuple[str, dict]] = []
    if not any(sc.load <= rho_bar for sc, *_ in cands):
        for family, tuning, scen in (("proposed", floor, scenario), ("all chains", keep_all, keep_all_scenario)):
            row = _best_c_meeting_target(tuning, lam, rho_bar) if tuning is not None else None
            if row is None:
                continue
            if row["objective"] <= prop.value * (1 + 1e-12):
                placement = gbpcr(scen, int(row["c"]), arrays).placement
                cands.append((score(placement), placement, int(row["c"]), f"{family} at the target load"))
            else:
                target_met.append((family, row))

    # the guarantee comes first: no candidate predicted slower than the floors (the paper's method's plan and, under a
    # batch slowdown, the batch-1 pass's plans as it allocated them) may win over them, whatever its load; among
    # the rest the target load ranks first, then the prediction.  (Ranking by the target load alone let a plan that
    # meets it with a higher prediction beat a floor that misses it: under a batch slowdown, where the load is
    # counted against the saturation rate with every planned slot busy, search then returned plans predicted
    # slower than proposed's, and than the batch-1 pass's.)
    guard = min([prop.value] + [sc.value for sc, _, _, src in cands if src in BATCH1_LABELS.values()])

    def rank(item):
        sc = item[0]
        # ties: the paper's plan, then what the batch-aware phases found, then the batch-1 pass's plans
        return (sc.value > guard * (1 + 1e-12), sc.load > rho_bar, sc.value, item[3] != "proposed",
                item[3].startswith("batch-1"))
    cands.sort(key=rank)

    # 2. local search from the best few distinct starts
    c_values = sorted({c for _, _, c, _ in cands} | {1, 2, 3, 4, 6, 8, 12, 16})
    sized_all = [arrays.blocks_for(c).tolist() for c in c_values]
    sized = [sorted({int(row[j]) for row in sized_all if row[j] > 0}, reverse=True) for j in range(J)]
    model = scenario.model
    # the most blocks a server can hold and still keep KV for one job on each
    max_blocks = [min(model.num_blocks, math.floor(s.memory_gb / (model.block_size_gb + model.cache_size_gb) + 1e-9))
                  for s in scenario.servers]
    seen, starts = set(), []
    for item in cands:
        if item[1].key() not in seen and math.isfinite(item[0].value):
            seen.add(item[1].key())
            starts.append(item)
        if len(starts) >= SEEDS:
            break
    found = list(cands)
    accepted = 0
    for i, (sc0, placement0, c0, origin) in enumerate(starts):
        if cut_short:
            break
        share = (deadline - time.monotonic()) / (len(starts) - i)
        if share <= 0:
            cut_short = True
            break
        options.report(0.5 + 0.4 * i / len(starts), f"{name}: local search from c = {c0}")
        placement, value, moves, stopped = local_search(scenario, placement0, score, time.monotonic() + share,
                                                        sized, max_blocks, options.seed + i)
        accepted += moves
        cut_short = cut_short or (stopped and i == len(starts) - 1)
        if moves:
            found.append((score(placement), placement, c0, f"local search from {origin}"))
    found.sort(key=rank)
    best_sc, best_placement, best_c, source = found[0]

    # 2b. iterated local search: kick one or two servers to a random range, climb again, keep if better
    rng = random.Random(options.seed)
    kicks, stall = 0, 0
    L = model.num_blocks
    while not cut_short and stall < KICKS_PER_SERVER * J:
        if time.monotonic() > deadline:
            cut_short = True
            break
        start, count = list(best_placement.start), list(best_placement.count)
        for j in rng.sample(range(J), min(J, rng.choice((1, 2, 2, 3)))):
            m = rng.randint(0, max_blocks[j])
            start[j], count[j] = (rng.randint(0, L - m), m) if m else (0, 0)
        kicked = Placement(tuple(start), tuple(count))
        kicks += 1
        placement, value, moves, stopped = local_search(scenario, kicked, score, deadline, sized, max_blocks,
                                                        options.seed + 100 + kicks)
        accepted += moves
        sc = score(placement)
        if rank((sc, placement, best_c, "")) < rank((best_sc, best_placement, best_c, "")) and \
                value < best_sc.value * (1 - 1e-12):
            best_sc, best_placement, source, stall = sc, placement, "iterated local search", 0
        else:
            stall += 1
        if stopped:
            cut_short = True

    # 3. exact allocation on the final placement, when its chains are few
    exact_note = "skipped (budget spent)"
    if time.monotonic() < deadline:
        better = exact_allocation(scenario, best_placement, score, best_sc.chains,
                                  min(EXACT_TIME_S, deadline - time.monotonic()))
        if better is None:
            exact_note = "not better than GCA, or too many chains to enumerate"
        elif better.value < best_sc.value * (1 - 1e-12) and (better.load <= rho_bar or best_sc.load > rho_bar):
            best_sc, source = better, source + " + exact allocation"
            exact_note = "improved the bound"
        else:
            exact_note = "not better than GCA"
    elapsed = time.monotonic() - started
    chains = [make_chain(scenario, ch.hops, ch.capacity) for ch in best_sc.chains]
    meets = best_sc.load <= rho_bar
    notable.append((best_sc.chains, best_placement, best_c, "winner"))
    batch1_note = ""
    if batch1 is not None:
        # the layout came from the batch-1 pass: as it planned it, re-allocated, or moved from it by local search
        own = [sc.value for sc, _, _, src in found + [(best_sc, best_placement, best_c, source)]
               if "batch-1" not in src and math.isfinite(sc.value)]
        batch1["batch_aware_best_s"] = min(own) if own else None
        batch1["layout_won"] = source.startswith("batch-1")
        batch1["as_planned_won"] = source in BATCH1_LABELS.values()
        batch1["moved_from_it"] = "from batch-1" in source
        b1 = batch1["response_time_s"]
        batch1_note = (f"; batch-1 pass ({batch1['searched_s']:.3g} s of its {batch1['budget_s']:.3g} s, winner: "
                       f"{batch1['winner']}): its plan predicted "
                       + (f"{b1:.4g} s under the batch model" if b1 is not None and math.isfinite(b1)
                          else "unstable under the batch model")
                       + ("; the batch-1 layout won" + (", as the batch-1 pass allocated it"
                                                        if batch1["as_planned_won"] else "")
                          if batch1["layout_won"] else
                          "; the local search moved on from the batch-1 layout" if batch1["moved_from_it"] else ""))
    detail = (f"winner: {source} (c = {best_c}); proposed's lower bound {prop.value:.4g} s -> {best_sc.value:.4g} s; "
              f"{len(score.cache)} placements scored, {accepted} moves accepted, {kicks} kicks; exact allocation: {exact_note}"
              + ("" if meets else f"; load {best_sc.load:.3g} exceeds the target load {rho_bar:g} "
                                  + _target_note(target_met, lam, guard, _slower_meeting(found, rho_bar, guard)))
              + (f"; the budget ran out before the search began: the paper's method alone (always run in full, "
                 f"it is the floor) took {floor_s:.3g} s of the {budget:g} s budget" if floor_s >= budget else
                 "; the budget ran out before the search finished" if cut_short else "")
              + batch1_note)
    extra = {
        "search": {"searched_s": elapsed, "budget_s": budget, "cut_short": cut_short, "detail": detail},
        "search_steps": {"winner": source, "c": best_c, "proposed_c": floor.best.c, "proposed_s": floor_s,
                         "proposed_response_time_lower_s": prop.value, "response_time_lower_s": best_sc.value,
                         "improvement": (prop.value - best_sc.value) / prop.value,
                         "placements_evaluated": len(score.cache), "moves_accepted": accepted},
    }
    if batch1 is not None:
        extra["search_steps"]["batch1"] = batch1
    if lam >= score.model.saturation_rate(chains):    # cannot happen: scored plans are stable
        return PlanResult(name, False, "no stable plan found", extra=extra), notable
    extra.update(batch_extras(scenario, chains, best_placement))
    return (PlanResult(name, True, c=best_c, placement=best_placement, chains=chains, dispatch="jffc", extra=extra),
            notable)


@register("search", "the default: the paper's method, then every-chain GBP-CR with c and the chain count chosen "
          "by the JFFC lower bound, a local search over one- and two-server moves (overlapping ranges too) and "
          "exact allocation when cheap; never worse than proposed by the bound", default=True)
def search(scenario: Scenario, options: PlanOptions) -> PlanResult:
    return run_search(scenario, options, "search")


@register("best", "alias of search")
def best(scenario: Scenario, options: PlanOptions) -> PlanResult:
    return run_search(scenario, options, "best")
