"""Parallax's layer allocator as a baseline (``parallax``): what a runtime people run today does.

Reimplemented from the project's published description and behaviour (no code copied).

``parallax`` (GradientHQ/parallax, its layer allocator)
    * Memory split by fixed ratios: ``PARAM_RATIO`` (65 %) of a server's memory
      for parameters, ``KV_RATIO`` (25 %) for KV cache.  Layer capacity
      ``cap_j = min(L, floor(0.65 M_j / s_m))``; KV slots
      ``floor(0.25 M_j / s_c)`` (one slot = one block's KV for one job).
      The embedding / LM-head allowance of the first / last stage is not
      modelled (our model gives no separate sizes for them).
    * Servers sorted by capacity, largest first.  For every pipeline count
      ``k = 1 .. min(J, floor(sum cap / L))`` a memoised dynamic programme over
      (server index, sorted residual layers of the open pipelines, finished
      pipelines) finds ``s*(k)``, the fewest servers forming ``k`` complete
      pipelines (each server is skipped, joins an open pipeline or starts one);
      the ``k`` maximising ``k^2 / s*(k)`` wins.  Past ``DP_MAX_SERVERS`` (or
      when the DP exceeds ``DP_TIME_S``) its greedy allocator is used instead:
      fill pipelines from the capacity-sorted servers, a pipeline starting with
      the smallest server that can hold the whole model while leaving enough
      for another one.  The plan says which (``parallax_allocator``).
    * Within a pipeline, layers by water-filling: ``lambda`` with
      ``sum_i min(cap_i, lambda F_i) = L`` (``F_i`` = the server's compute
      speed, here ``1 / block_time_s``), then largest-remainder rounding.
    * Dispatch: round-robin over the pipelines; a pipeline admits a request
      while every server's KV share has room (capacity
      ``min_j floor(slots_j / m_j)``), otherwise the request waits in that
      pipeline's FIFO queue.  No KV planning across pipelines.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement, make_chain
from .common import floor_eps

PARAM_RATIO = 0.65
KV_RATIO = 0.25
DP_MAX_SERVERS = 64
DP_TIME_S = 10.0


class _Timeout(Exception):
    pass


def parallax_capacity(scenario: Scenario) -> tuple[list[int], list[int]]:
    model = scenario.model
    L = model.num_blocks
    caps = [min(L, floor_eps(PARAM_RATIO * s.memory_gb / model.block_size_gb)) for s in scenario.servers]
    slots = [floor_eps(KV_RATIO * s.memory_gb / model.cache_size_gb) for s in scenario.servers]
    return caps, slots


def dp_pipelines(caps: list[int], order: list[int], L: int, deadline: float) -> list[list[int]] | None:
    """Parallax's exact DP: the k maximising k^2 / s*(k); pipelines as server lists (None: none possible)."""
    n = len(order)
    cap = [caps[j] for j in order]
    suffix = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + cap[i]
    best_k, best_score, best_path = 0, -math.inf, None
    calls = [0]
    for k in range(1, min(n, suffix[0] // L) + 1):
        @lru_cache(maxsize=None)
        def dp(i: int, open_res: tuple[int, ...], done: int) -> tuple[float, tuple]:
            calls[0] += 1
            if calls[0] % 4096 == 0 and time.monotonic() > deadline:
                raise _Timeout
            if done == k and not open_res:
                return 0.0, ("done",)
            if i == n:
                return math.inf, ()
            new_needed = k - done - len(open_res)
            if (new_needed < 0 or suffix[i] < sum(open_res) + max(0, new_needed) * L
                    or done + len(open_res) + (n - i) < k):
                return math.inf, ()
            best = (dp(i + 1, open_res, done)[0], ("skip",))
            for jx, r in enumerate(open_res):
                rest = list(open_res)
                if r - cap[i] <= 0:
                    rest.pop(jx)
                    cost = 1 + dp(i + 1, tuple(rest), done + 1)[0]
                else:
                    rest[jx] = r - cap[i]
                    rest.sort()
                    cost = 1 + dp(i + 1, tuple(rest), done)[0]
                if cost < best[0]:
                    best = (cost, ("join", jx))
            if new_needed > 0:
                if L - cap[i] <= 0:
                    cost = 1 + dp(i + 1, open_res, done + 1)[0]
                else:
                    cost = 1 + dp(i + 1, tuple(sorted(open_res + (L - cap[i],))), done)[0]
                if cost < best[0]:
                    best = (cost, ("start",))
            return best

        s_star = dp(0, (), 0)[0]
        if math.isfinite(s_star) and k * k / s_star > best_score:
            best_k, best_score, best_path = k, k * k / s_star, dp
    if best_path is None:
        return None
    # replay the DP's choices; open pipelines are tracked with their residuals (sorted like the state)
    pipes_open: list[tuple[int, list[int]]] = []
    pipes_done: list[list[int]] = []
    i, state_done = 0, 0
    while True:
        open_res = tuple(sorted(r for r, _ in pipes_open))
        _, action = best_path(i, open_res, state_done)
        if action[0] == "done":
            break
        if action[0] == "join":
            pipes_open.sort(key=lambda p: p[0])
            r, members = pipes_open[action[1]]
            members.append(order[i])
            if r - cap[i] <= 0:
                pipes_open.pop(action[1])
                pipes_done.append(members)
                state_done += 1
            else:
                pipes_open[action[1]] = (r - cap[i], members)
        elif action[0] == "start":
            if L - cap[i] <= 0:
                pipes_done.append([order[i]])
                state_done += 1
            else:
                pipes_open.append((L - cap[i], [order[i]]))
        i += 1
    return pipes_done


def greedy_pipelines(caps: list[int], order: list[int], L: int) -> list[list[int]]:
    """Parallax's greedy allocator (with its look-ahead for the first server of a pipeline)."""
    available = list(order)
    pipes = []
    while available and sum(caps[j] for j in available) >= L:
        members, remaining = [], L
        total = sum(caps[j] for j in available)
        while remaining > 0 and available:
            pick = 0
            if not members and total - remaining >= L + 1:
                for idx, j in enumerate(available):        # the smallest that alone completes a pipeline
                    if caps[j] >= remaining and total - caps[j] >= L:
                        pick = idx
            j = available.pop(pick)
            members.append(j)
            remaining -= caps[j]
            total -= caps[j]
        if remaining > 0:
            break
        pipes.append(members)
    return pipes


def water_fill(caps: list[int], speed: list[float], L: int) -> list[int]:
    """Layers per stage: sum_i min(cap_i, lambda F_i) = L, then floor + largest remainders within caps."""
    lo, hi = 0.0, max(c / f for c, f in zip(caps, speed))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sum(min(c, mid * f) for c, f in zip(caps, speed)) >= L:
            hi = mid
        else:
            lo = mid
    target = [min(c, hi * f) for c, f in zip(caps, speed)]
    counts = [min(c, math.floor(t)) for c, t in zip(caps, target)]
    remaining = L - sum(counts)
    for _, i in sorted(((t - m, -i) for i, (t, m) in enumerate(zip(target, counts))), reverse=True):
        i = -i
        if remaining <= 0:
            break
        if counts[i] < caps[i]:
            counts[i] += 1
            remaining -= 1
    for i in range(len(counts)):              # anything left (rounding at the caps) where there is room
        take = min(caps[i] - counts[i], remaining)
        counts[i] += take
        remaining -= take
    return counts


@register("parallax", "Parallax's scheduler as a baseline: fixed 65 %/25 % memory split, pipelines by its DP "
          "(k maximising k^2/s*(k); its greedy past 64 servers), water-filled layers, round-robin dispatch")
def parallax(scenario: Scenario, options: PlanOptions) -> PlanResult:
    name = "parallax"
    L = scenario.model.num_blocks
    J = len(scenario.servers)
    caps, slots = parallax_capacity(scenario)
    order = sorted((j for j in range(J) if caps[j] > 0), key=lambda j: (-caps[j], j))
    allocator = "dp"
    pipes = None
    if len(order) <= DP_MAX_SERVERS:
        try:
            pipes = dp_pipelines(caps, order, L, time.monotonic() + DP_TIME_S)
        except _Timeout:
            allocator = f"greedy (the DP passed {DP_TIME_S:g} s)"
    else:
        allocator = f"greedy (more than {DP_MAX_SERVERS} servers)"
    if pipes is None:
        pipes = greedy_pipelines(caps, order, L)
        allocator = allocator if allocator != "dp" else "greedy (the DP found no pipeline)"
    extra = {"parallax_allocator": allocator, "parallax_pipelines": len(pipes)}
    if not pipes:
        return PlanResult(name, False, f"with {PARAM_RATIO:.0%} of memory for parameters the servers hold "
                          f"{sum(caps)} layers, fewer than one pipeline of {L}", dispatch=None, extra=extra)
    start, count = [0] * J, [0] * J
    chains, starved = [], 0
    for members in pipes:
        members = sorted(members, key=lambda j: (-caps[j], j))         # stage order: capacity-sorted
        layers = water_fill([caps[j] for j in members], [1.0 / scenario.servers[j].block_time_s
                                                         for j in members], L)
        a, hops = 0, []
        for j, m in zip(members, layers):
            if m <= 0:
                continue
            start[j], count[j] = a, m
            hops.append((j, m))
            a += m
        capacity = min(slots[j] // m for j, m in hops)
        if capacity >= 1:
            chains.append(make_chain(scenario, hops, capacity))
        else:
            starved += 1
    extra["parallax_pipelines_without_kv_room"] = starved
    placement = Placement(tuple(start), tuple(count))
    if not chains:
        return PlanResult(name, False, f"no pipeline has KV room for one request in its {KV_RATIO:.0%} share",
                          placement=placement, dispatch=None, extra=extra)
    return PlanResult(name, True, placement=placement, chains=chains, dispatch="round-robin", extra=extra)
