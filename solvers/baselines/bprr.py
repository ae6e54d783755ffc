"""CG-BPRR baseline (Sun et al. 2025): conservative block placement + WS-RR routing (spec section 3).

Reproduced from the spec's description of BPRR (no authors' code used):

* **Target concurrency** ``R = round(lambda*T1 + sqrt(lambda*T1))`` (at least 1).
  ``T1``, one request's time on an idle system, is taken as the time of the
  fastest chain of the BPRR placement built for ``R = 1`` (the largest windows,
  hence the shortest idle-system path); this breaks the circularity between
  ``R`` and the placement without iterating.
* **Conservative sizing** ``m_j = min(floor(M_j / (s_m + s_c*R)), L)``: each
  server keeps KV for at least ``R`` jobs on every block it holds.  At run time
  it may use all its memory left after blocks: ``floor((M_j - s_m*m_j)/s_c)``
  slots; its per-block capacity is ``slots_j // m_j``.
* **Placement.** Servers in increasing amortised time ``(tau_c + tau_p*m)/m``
  (ties by index), every server is placed.  Each block needs capacity ``R``.
  While some block is under-served, the server takes a window covering the
  under-served block with the largest remaining need (lowest such block on
  ties); among those windows, the one covering the most remaining need (lowest
  start on ties).  Once every block has capacity ``R``, it takes the window
  whose sorted vector of per-block capacities is lexicographically smallest.
* **WS-RR routing.** No central queue, no pre-allocated chains: on arrival a
  request takes the shortest path of the routing DAG (server ``j`` after a
  server ending at ``e`` runs ``end_j - e`` blocks) with edge cost = expected
  wait until ``m_ij`` slots are free at ``j`` + the hop's time
  ``tau_c_j + tau_p_j*m_ij``.  The expected wait counts the slots that jobs
  already waiting for ``j`` will take first, then frees the slots of the jobs in
  service at ``j`` in order of their expected finish (start + mean time of their
  route); beyond those it extrapolates in rounds of the server's slots.
* The request is then committed to that path and waits until every server on it
  has its slots free; waiting jobs start in arrival order per server (a job may
  not overtake an earlier one waiting for the same server), holding their slots
  for their whole service.

Service times are the model's ``sum(tau_c_j + tau_p_j*m_ij)`` (times the job's
size factor, or from its tokens for a trace); the router only knows means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement
from .common import Route, SlotPolicy, flattest_window, floor_eps, run_slot_policy


@dataclass(frozen=True)
class BprrPlacement:
    R: int
    T1: float
    placement: Placement
    slots: tuple[int, ...]
    block_capacity: tuple[int, ...]          # per block: sum of slots_j // m_j over servers holding it
    feasible: bool
    reason: str | None = None


def bprr_counts(scenario: Scenario, R: int) -> tuple[list[int], list[int]]:
    """Blocks per server for target concurrency ``R``, and the KV slots the rest of memory gives."""
    model = scenario.model
    L = model.num_blocks
    counts = [min(floor_eps(s.memory_gb / (model.block_size_gb + model.cache_size_gb * R)), L)
              for s in scenario.servers]
    slots = [s.cache_slots(m, model) if m else 0 for s, m in zip(scenario.servers, counts)]
    return counts, slots


def place(scenario: Scenario, R: int) -> tuple[Placement, list[int], list[int]]:
    """BPRR's window choice for every server; returns placement, slots and per-block capacity."""
    L = scenario.model.num_blocks
    counts, slots = bprr_counts(scenario, R)
    order = sorted((j for j, m in enumerate(counts) if m > 0),
                   key=lambda j: ((scenario.servers[j].comm_time_s + scenario.servers[j].block_time_s * counts[j])
                                  / counts[j], j))
    cap = [0] * L
    starts = [0] * len(counts)
    for j in order:
        m = counts[j]
        per_block = slots[j] // m
        need = [R - c for c in cap]
        top = max(need)
        if top > 0:
            b = need.index(top)
            lo, hi = max(0, b - m + 1), min(b, L - m)
            best, best_cover = lo, -1
            for a in range(lo, hi + 1):
                cover = sum(x for x in need[a:a + m] if x > 0)
                if cover > best_cover:
                    best, best_cover = a, cover
        else:
            best = flattest_window(cap, m)
        starts[j] = best
        for b in range(best, best + m):
            cap[b] += per_block
    return Placement(tuple(starts), tuple(counts)), slots, cap


def position_edges(placement: Placement, num_blocks: int) -> dict[int, list[tuple[int, int, int]]]:
    """out[e] = [(server j, next position end_j, blocks m = end_j - e)] over the positions {0} + ends."""
    used = placement.used()
    positions = sorted({0} | {placement.end(j) for j in used})
    out: dict[int, list[tuple[int, int, int]]] = {e: [] for e in positions}
    for e in positions:
        if e == num_blocks:
            continue
        for j in used:
            if placement.start[j] <= e < placement.end(j):
                out[e].append((j, placement.end(j), placement.end(j) - e))
    return out


def fastest_route(scenario: Scenario, placement: Placement) -> tuple[float, Route]:
    """Shortest source-sink path with hop cost tau_c + tau_p*m (inf, () when none)."""
    L = scenario.model.num_blocks
    out = position_edges(placement, L)
    dist = {e: math.inf for e in out}
    dist[0] = 0.0
    back: dict[int, tuple[int, int, int]] = {}
    for e in sorted(out):
        if dist[e] == math.inf:
            continue
        for j, f, m in out[e]:
            s = scenario.servers[j]
            c = dist[e] + s.comm_time_s + s.block_time_s * m
            if c < dist[f]:
                dist[f], back[f] = c, (e, j, m)
    if dist.get(L, math.inf) == math.inf:
        return math.inf, ()
    hops = []
    f = L
    while f:
        e, j, m = back[f]
        hops.append((j, m))
        f = e
    return dist[L], tuple(reversed(hops))


def target_concurrency(arrival_rate: float, T1: float) -> int:
    x = arrival_rate * T1
    return max(1, math.floor(x + math.sqrt(x) + 0.5))


def bprr_placement(scenario: Scenario, R: int | None = None) -> BprrPlacement:
    L = scenario.model.num_blocks
    base, _, _ = place(scenario, 1)
    T1, _ = fastest_route(scenario, base)
    if R is None:
        if not math.isfinite(T1):
            return BprrPlacement(0, T1, base, (0,) * len(base.count), (0,) * L, False,
                                 "the servers cannot hold all blocks even with cache for one job")
        R = target_concurrency(scenario.workload.arrival_rate, T1)
    placement, slots, cap = place(scenario, R)
    reason = None
    if min(cap) <= 0:
        reason = (f"with cache for R = {R} concurrent jobs per block the servers leave block(s) "
                  f"{[b for b in range(L) if cap[b] <= 0][:5]} without capacity")
    return BprrPlacement(R, T1, placement, tuple(slots), tuple(cap), reason is None, reason)


class WsrrPolicy(SlotPolicy):
    """WS-RR: per-request shortest path with expected-wait edge costs; jobs wait on their committed path."""

    def __init__(self, scenario: Scenario, bp: BprrPlacement):
        super().__init__(scenario, bp.placement, bp.slots)
        self.L = scenario.model.num_blocks
        out = position_edges(bp.placement, self.L)
        self.positions = sorted(out)
        self.out = {e: [(j, f, m, self.comm[j] + self.blk[j] * m) for j, f, m in edges] for e, edges in out.items()}
        self.in_service: list[dict[int, tuple[float, int]]] = [{} for _ in self.slots]   # job -> (exp. finish, slots)
        self.waiting_demand = [0] * len(self.slots)
        self.waiting: list[tuple[int, Route]] = []     # committed jobs not yet started, arrival order
        self.mean_time = bp.T1
        self.delayed = 0

    def expected_wait(self, j: int, m: int, now: float) -> float:
        avail = self.free[j] - self.waiting_demand[j]
        if avail >= m:
            return 0.0
        need = m - avail
        freed, last = 0, now
        for finish, h in sorted(self.in_service[j].values()):
            freed += h
            last = max(last, finish)
            if freed >= need:
                return max(0.0, finish - now)
        rounds = math.ceil((need - freed) / max(1, self.slots[j]))
        return last - now + rounds * self.mean_time

    def route(self, now: float) -> Route:
        inf = math.inf
        dist = {e: inf for e in self.positions}
        dist[0] = 0.0
        back: dict[int, tuple[int, int, int]] = {}
        waits: dict[tuple[int, int], float] = {}
        for e in self.positions:
            d = dist[e]
            if d == inf:
                continue
            for j, f, m, t in self.out[e]:
                w = waits.get((j, m))
                if w is None:
                    w = waits[(j, m)] = self.expected_wait(j, m, now)
                c = d + w + t
                if c < dist[f]:
                    dist[f], back[f] = c, (e, j, m)
        hops = []
        f = self.L
        while f:
            e, j, m = back[f]
            hops.append((j, m))
            f = e
        return tuple(reversed(hops))

    def begin(self, job: int, route: Route, now: float) -> None:
        self.start(job, route, now)
        finish = now + sum(self.comm[j] + self.blk[j] * m for j, m in route)
        for j, m in self.demand(route).items():
            self.in_service[j][job] = (finish, m)

    def on_arrival(self, job: int, now: float) -> None:
        route = self.route(now)
        need = self.demand(route)
        if all(self.waiting_demand[j] == 0 for j in need) and self.fits(route):
            self.begin(job, route, now)
            return
        self.delayed += 1
        self.waiting.append((job, route))
        for j, m in need.items():
            self.waiting_demand[j] += m

    def on_departure(self, job: int, now: float, resource: int) -> None:
        for j in self.demand(self.routes[job]):
            del self.in_service[j][job]
        super().on_departure(job, now, resource)

    def released(self, now: float) -> None:
        if not self.waiting:
            return
        blocked: set[int] = set()
        keep = []
        for job, route in self.waiting:
            need = self.demand(route)
            if not blocked.intersection(need) and self.fits(route):
                for j, m in need.items():
                    self.waiting_demand[j] -= m
                self.begin(job, route, now)
            else:
                blocked.update(need)
                keep.append((job, route))
        self.waiting = keep

    def on_timer(self, now: float, tag: int, data: int) -> None:
        raise AssertionError("WS-RR sets no timers")


@register("bprr", "CG-BPRR baseline: conservative placement for target concurrency R, WS-RR per-request "
                  "routing with expected-wait edge costs (simulated)")
def bprr(scenario: Scenario, options: PlanOptions) -> PlanResult:
    R = options.extra.get("bprr_R")
    bp = bprr_placement(scenario, R if R is None else int(R))
    extra: dict[str, Any] = {"R": bp.R, "T1_s": bp.T1 if math.isfinite(bp.T1) else None,
                             "server_kv_slots": list(bp.slots)}
    if not bp.feasible:
        return PlanResult("bprr", False, bp.reason, placement=bp.placement, dispatch=None, extra=extra)
    result = PlanResult("bprr", True, placement=bp.placement, dispatch=None, extra=extra)
    if options.simulate_requests > 0:
        policy = WsrrPolicy(scenario, bp)
        sim = run_slot_policy(scenario, policy, options.simulate_requests, options.seed)
        sim["requests_delayed"] = policy.delayed
        result.simulation = sim
    return result
