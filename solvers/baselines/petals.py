"""PETALS baseline: its own block placement and per-request routing (spec section 3).

Reproduced from the description of PETALS' behaviour (no PETALS code used):

* **Sizing.** A server reserves a fixed KV pool of ``attn_cache_tokens``
  tokens per block it holds (4096 by default, 16384 when the model has grouped
  KV heads, i.e. ``num_kv_heads < num_heads`` in its architecture).  One token's
  KV of one block is ``s_c / max_tokens`` (``s_c`` is sized for ``max_tokens``,
  the workload's ``max_tokens`` or the architecture's ``max_seq_len``, else
  2048), so the pool costs ``cache_per_block = attn_cache_tokens * s_c /
  max_tokens`` per block and ``m_j = min(floor(M_j / (s_m + cache_per_block)), L)``.
  Memory beyond the blocks and that pool stays unused, as in PETALS.
* **KV slots.** A request reserves KV for ``max_tokens`` on every block it runs
  on a server, i.e. one slot of size ``s_c`` per block, so server ``j`` has
  ``floor(m_j * cache_per_block / s_c)`` slots (2 per block for BLOOM at 2048).
* **Autograd reserve** (default on, ``petals_autograd_reserve``): a PETALS server
  sizes itself as ``floor((M_j - autograd) / (s_m + cache_per_block))`` with
  ``autograd = 2 GiB * hidden_size / 14336`` kept free for backward passes
  (2 GiB for BLOOM-176B; 2 GiB when the architecture is unknown).  This is the
  block limit a real server applies when ``--num_blocks`` is not given, capped
  at the model's block count.
* **Joining** (default ``petals_join_order = "random"``): servers join one at a
  time in a random order drawn from the plan's seed (real servers start after a
  random delay, so arrival order is not the scenario's); ``"scenario"`` keeps
  the document's order (fast servers first in the paper's instances, which is
  kinder to PETALS).  Each picks the
  start whose window has the lexicographically smallest sorted vector of
  per-block throughput (ties: the lowest start), then adds its throughput to
  every block it holds.  A server's throughput is its single-block inference
  rate ``1 / per_token_block_time``.
* **Routing.** Per request, a shortest path over (server, block): entering a
  server costs ``rtt_j/2 + 18 ms`` plus 10 s if the server has no free cache
  (fewer free slots than blocks it holds: it cannot take one more request on
  all of its blocks), each block run on server ``j`` costs ``1/inference_rps_j``
  (the per-token time of one block).  A route may leave a server before the
  end of its range (PETALS routes over blocks, not over whole spans).
* **No central queue.** If the chosen route does not fit in the servers' free
  slots the request waits and retries (re-routing from scratch) after 1, 2,
  4, ... s, capped at 60 s.

Simplifications (documented, deliberate):

* ``rtt_j`` is the server's ``rtt_ms`` when the scenario gives one; otherwise
  it is recovered from the calibration model ``comm_time_s = (rtt + 18 ms) *
  (output_tokens + 1)`` (one round trip per generated token plus the prompt).
  ``1/inference_rps_j`` is the server's per-output-token block time
  (``timing.block_per_output_token_s``), else ``block_time_s / (output_tokens + 1)``.
* A request's service time on its route is the model's ``sum(tau_c_j +
  tau_p_j * blocks_j)`` (times the job's size factor, or from its token counts
  for a trace), as for every other method, so methods differ only in placement
  and routing.  Servers do not slow down with concurrency (the memory-bound
  regime of the spec).
* PETALS' periodic rebalancing (servers moving blocks while running), its
  client-side request timeouts and server failures are not modelled: the
  placement is the one reached after all servers joined.

The routing above is the spec's description (``petals_client="spec"``, the
default).  ``petals_client="deployed"`` simulates what PETALS 2.2's client does
against a live swarm instead (``PetalsClientPolicy``: announced rather than true
free cache, refusals, bans, routing on its last read of the swarm, hand-overs at
span ends only); the PETALS testbed checks it against a real swarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..algorithms import PlanOptions, register
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement
from .common import Route, SlotPolicy, flattest_window, floor_eps, max_tokens_of, run_slot_policy

DEFAULT_CACHE_TOKENS = 4096
DEFAULT_CACHE_TOKENS_GQA = 16384
HOP_OVERHEAD_S = 0.018
NO_CACHE_PENALTY_S = 10.0
BACKOFF_MAX_S = 60.0
_RETRY = 1


@dataclass(frozen=True)
class PetalsPlacement:
    placement: Placement
    slots: tuple[int, ...]
    attn_cache_tokens: int
    cache_per_block_gb: float
    throughput: tuple[float, ...]            # per server, 1 / per-token block time
    block_throughput: tuple[float, ...]      # per block, sum over the servers holding it
    feasible: bool
    reason: str | None = None


def attn_cache_tokens_of(scenario: Scenario) -> int:
    arch = scenario.model.architecture
    grouped = arch is not None and arch.num_kv_heads < arch.num_heads
    return DEFAULT_CACHE_TOKENS_GQA if grouped else DEFAULT_CACHE_TOKENS


def _steps(scenario: Scenario) -> float:
    out = scenario.workload.output_tokens
    return out + 1.0 if out is not None else 1.0


def per_token_block_time(scenario: Scenario) -> list[float]:
    steps = _steps(scenario)
    out = []
    for s in scenario.servers:
        t = s.timing.block_per_output_token_s
        out.append(t if t > 0 else s.block_time_s / steps)
    return out


def rtt_s(scenario: Scenario) -> list[float]:
    steps = _steps(scenario)
    out = []
    for s in scenario.servers:
        if s.rtt_ms is not None:
            out.append(s.rtt_ms / 1e3)
        else:
            per_step = s.timing.comm_per_output_token_s or s.comm_time_s / steps
            out.append(max(0.0, per_step - HOP_OVERHEAD_S))
    return out


GIB_GB = 1024 ** 3 / 1e9
JOIN_ORDERS = ("random", "scenario")
CLIENT_MODELS = ("spec", "deployed")


def autograd_reserve_gb(scenario: Scenario) -> float:
    """PETALS' estimate of rpc_backward memory: 2 GiB scaled by hidden size relative to BLOOM's 14336."""
    arch = scenario.model.architecture
    hidden = arch.hidden_size if arch is not None and arch.hidden_size else 14336
    return 2 * GIB_GB * hidden / 14336


def join_order(scenario: Scenario, order: str, seed: int) -> list[int]:
    if order not in JOIN_ORDERS:
        raise ValueError(f"petals_join_order must be one of {', '.join(JOIN_ORDERS)}, not {order!r}")
    idx = list(range(len(scenario.servers)))
    if order == "random":
        import random
        random.Random(seed).shuffle(idx)
    return idx


def petals_placement(scenario: Scenario, attn_cache_tokens: int | None = None, *, order: str = "random",
                     seed: int = 1, autograd_reserve: bool = True) -> PetalsPlacement:
    model = scenario.model
    L = model.num_blocks
    tokens = attn_cache_tokens or attn_cache_tokens_of(scenario)
    cache_per_block = tokens * model.cache_size_gb / max_tokens_of(scenario)
    reserve = autograd_reserve_gb(scenario) if autograd_reserve else 0.0
    counts = [min(floor_eps(max(0.0, s.memory_gb - reserve) / (model.block_size_gb + cache_per_block)), L)
              for s in scenario.servers]
    slots = tuple(floor_eps(m * cache_per_block / model.cache_size_gb) for m in counts)
    throughput = tuple(1.0 / t for t in per_token_block_time(scenario))
    load = [0.0] * L
    starts = [0] * len(counts)
    for j in join_order(scenario, order, seed):
        m = counts[j]
        if m == 0:
            continue
        best = flattest_window(load, m)
        starts[j] = best
        for b in range(best, best + m):
            load[b] += throughput[j]
    placement = Placement(tuple(starts), tuple(counts))
    reason = None
    if sum(counts) < L or min(load) <= 0.0:
        held = sum(counts)
        reason = (f"with a {tokens}-token KV pool per block the servers hold {held} block copies and leave "
                  f"block(s) {[b for b in range(L) if load[b] <= 0][:5]} uncovered")
    return PetalsPlacement(placement, slots, tokens, cache_per_block, throughput, tuple(load), reason is None, reason)


class PetalsPolicy(SlotPolicy):
    """Per-request min-latency routing over (server, block) with retries and back-off."""

    def __init__(self, scenario: Scenario, pp: PetalsPlacement):
        super().__init__(scenario, pp.placement, pp.slots)
        p = pp.placement
        L = scenario.model.num_blocks
        self.L = L
        self.count = list(p.count)
        self.start_block = list(p.start)
        self.hop = [r / 2.0 + HOP_OVERHEAD_S for r in rtt_s(scenario)]
        self.per_block = per_token_block_time(scenario)
        self.cover: list[list[int]] = [[] for _ in range(L)]
        for j in p.used():
            for b in range(p.start[j], p.end(j)):
                self.cover[b].append(j)
        self.end_block = [p.end(j) for j in range(len(p.count))]
        # the spec's routing: a route may leave a server anywhere, no cost for the answer's way back
        self.leave_at_span_end = False
        self.exit = [0.0] * len(p.count)
        self.attempts: dict[int, int] = {}
        self.retries = 0
        self.jobs_retried = 0
        self.routes_computed = 0
        # the route depends only on which servers have free cache; while no job starts or
        # leaves, a retry would recompute the very same route, so it is cached per state version
        self.version = 0
        self._cached: tuple[int, Route] | None = None

    def route(self, begin: int = 0, free: list[int] | None = None, banned: frozenset[int] = frozenset()) -> Route | None:
        """Cheapest route over blocks ``begin..L-1`` given a view of the servers' free cache (default: the
        true one) and servers the client will not use; None when the banned servers leave a block uncovered."""
        inf = float("inf")
        L, cover, hop, pb, count, first = self.L, self.cover, self.hop, self.per_block, self.count, self.start_block
        last, at_end, exit_cost = self.end_block, self.leave_at_span_end, self.exit
        free = self.free if free is None else free
        on_cost = {}
        on_entry = {}
        client = [inf] * (L + 1)
        client[begin] = 0.0
        back: list[tuple[int, int]] = [(-1, -1)] * (L + 1)
        for b in range(begin, L):
            cb = client[b]
            best, arg = inf, (-1, -1)
            for j in cover[b]:
                if j in banned:
                    continue
                enter = cb + hop[j] + (NO_CACHE_PENALTY_S if free[j] < count[j] else 0.0)
                if first[j] < b and on_cost.get(j, inf) <= enter:
                    cost, e = on_cost[j], on_entry[j]
                else:
                    cost, e = enter, b
                cost += pb[j]
                on_cost[j] = cost
                on_entry[j] = e
                if b + 1 == L:
                    cost += exit_cost[j]
                elif at_end and last[j] != b + 1:
                    continue                   # it cannot hand over before the end of its span
                if cost < best:
                    best, arg = cost, (j, e)
            client[b + 1] = best
            back[b + 1] = arg
            if best == inf and not at_end:    # (with hand-overs at span ends only, a server may run on)
                return None
        if client[L] == inf:
            return None
        hops = []
        f = L
        while f > begin:
            j, e = back[f]
            hops.append((j, f - e))
            f = e
        hops.reverse()
        return tuple(hops)

    def on_arrival(self, job: int, now: float) -> None:
        self.attempt(job, now)

    def on_timer(self, now: float, tag: int, job: int) -> None:
        self.attempt(job, now)

    def current_route(self) -> Route:
        if self._cached is None or self._cached[0] != self.version:
            self.routes_computed += 1
            self._cached = (self.version, self.route())
        return self._cached[1]

    def start(self, job: int, route: Route, now: float) -> None:
        super().start(job, route, now)
        self.version += 1

    def released(self, now: float) -> None:
        self.version += 1

    def attempt(self, job: int, now: float) -> None:
        route = self.current_route()
        if self.fits(route):
            self.attempts.pop(job, None)
            self.start(job, route, now)
            return
        k = self.attempts.get(job, 0)
        if k == 0:
            self.jobs_retried += 1
        self.attempts[job] = k + 1
        self.retries += 1
        # 1, 2, 4, ... s capped at 60 s (the exponent is capped too: 2.0**k overflows for long waits)
        self.engine.schedule(now + min(2.0 ** min(k, 6), BACKOFF_MAX_S), _RETRY, job)


class PetalsClientPolicy(PetalsPolicy):
    """PETALS 2.2's client as it behaves against a running swarm, where ``PetalsPolicy`` is the spec's model.

    The differences, each read from the client's behaviour (``petals.client``, 2.2.0.post1):

    * **Announced cache, not the true one.** Routing sees each server's free cache as the server last
      announced it in the DHT (every ``announce_period_s``: ``run_server``'s ``--update_period``, 120 s;
      at launch all of it is free), so a request is sent to a full server as long as its last
      announcement said otherwise.
    * **Refusal.** A server without cache for the request refuses it at once (the client asks for no
      allocation wait).  The client bans it for ``ban_s`` (15 s, doubling on each further refusal; any
      successful step there lifts the ban, so a server full of requests in service is free of it one
      decoding step later).  Routing keeps using the swarm as the client last read it (every
      ``client_update_s``: the client's ``update_period``, 60 s by default), which still holds the
      refused server; the client re-reads it at once only when every server it knows for some block
      has refused, and a re-read leaves banned servers out unless that would leave a block without any.
      So a request usually meets the same full server again at each retry.
    * **Back-off.** The client tries again at once, then after 1, 2, 4, ... s (capped at 60), routing
      from the block that was refused; the hops it already holds stay open (their cache stays taken).
    * **Routing graph.** A route hands over from one server to the next only at the end of the first
      one's span (PETALS builds its graph that way), and the answer's way back from the last server
      (half its round trip) counts.  Each block costs ``1 / inference_rps``: ``block_cost_s`` when
      given (a server started with a fixed ``--throughput`` announces no ``inference_rps`` and the
      client assumes 300/s), else the server's per-token block time (what a server measuring itself
      announces).
    * **Giving up.** After ``max_retries`` failed attempts at one hop (None: never, PETALS' default) the
      request fails and releases what it held; failed requests are in ``failed`` and out of the time
      statistics.

    One client serves every request (one view, one ban list), as in the testbed's replay.
    """

    def __init__(self, scenario: Scenario, pp: PetalsPlacement, *, announce_period_s: float = 120.0,
                 client_update_s: float = 60.0, ban_s: float = 15.0, min_backoff_s: float = 1.0,
                 max_retries: int | None = None, block_cost_s: float | None = None):
        super().__init__(scenario, pp)
        n = len(self.slots)
        self.leave_at_span_end = True
        self.exit = [r / 2.0 for r in rtt_s(scenario)]
        if block_cost_s is not None:
            self.per_block = [float(block_cost_s)] * n
        self.announce_period, self.client_update = float(announce_period_s), float(client_update_s)
        self.announced = list(self.free)
        self.announce_epoch = self.refresh_epoch = 0
        self.ban_s, self.min_backoff, self.max_retries = float(ban_s), float(min_backoff_s), max_retries
        self.banned_until = [float("-inf")] * n
        self.ban_count = [0] * n
        self.lift_at = [float("inf")] * n       # when a step of a request in service there lifts its ban
        steps = _steps(scenario)                # one decoding step of a request on each server
        self.step_s = [(c + b * m) / steps for c, b, m in zip(self.comm, self.blk, self.count)]
        self.in_view = [True] * n               # in the swarm as the client last read it
        self.refused = [False] * n              # refused since that read (the client then re-reads when a
        self.reread = False                     # block has no server left that has not refused)
        self.in_service = [0] * n               # requests in service per server: their steps lift bans
        self.held: dict[int, list[tuple[int, int]]] = {}
        self.failures: dict[int, int] = {}      # failed attempts at the job's current hop
        self.failed: set[int] = set()
        self._retried: set[int] = set()
        self.rejections = 0

    def _announced(self, now: float) -> list[int]:
        epoch = int(now // self.announce_period) if self.announce_period > 0 else -1
        if epoch < 0 or epoch != self.announce_epoch:    # a new round of announcements (period 0: the truth)
            self.announce_epoch = epoch
            self.announced = list(self.free)
        return self.announced

    def _banned(self, j: int, now: float) -> bool:
        return self.banned_until[j] > now and now < self.lift_at[j]

    def _refresh(self, now: float) -> None:
        keep = [not self._banned(j, now) for j in range(len(self.slots))]
        for servers in self.cover:         # a block whose servers are all banned keeps them all
            if servers and not any(keep[j] for j in servers):
                for j in servers:
                    keep[j] = True
        self.in_view = keep
        self.refused = [False] * len(self.slots)
        self.reread = False

    def _route(self, begin: int, now: float) -> Route | None:
        epoch = int(now // self.client_update) if self.client_update > 0 else -1
        if epoch < 0 or epoch != self.refresh_epoch or self.reread:
            self.refresh_epoch = epoch
            self._refresh(now)
        return self.route(begin, self._announced(now), frozenset(j for j, v in enumerate(self.in_view) if not v))

    def attempt(self, job: int, now: float) -> None:
        held = self.held.setdefault(job, [])
        route = self._route(sum(m for _, m in held), now)
        if route is None:                      # every server of some block is banned
            self._failed_attempt(job, now)
            return
        for j, m in route:
            if self.free[j] < m:               # refused: no cache for this request
                self.rejections += 1
                self.refused[j] = True
                if any(not any(self.in_view[i] and not self.refused[i] for i in self.cover[b])
                       for b in range(self.start_block[j], self.end_block[j])):
                    self.reread = True
                if self.banned_until[j] <= now:
                    self.banned_until[j] = now + self.ban_s * 2.0 ** self.ban_count[j]
                    self.ban_count[j] += 1
                # the requests in service there step again within a step's time, and that success lifts it
                self.lift_at[j] = now + self.step_s[j] if self.in_service[j] else float("inf")
                self._failed_attempt(job, now)
                return
            self.take(j, m)
            held.append((j, m))
            self.failures[job] = 0
        for j, _ in held:
            self._served(j)
            self.in_service[j] += 1
        self.failures.pop(job, None)
        route = tuple(self.held.pop(job))
        self.routes[job] = route
        self.launch(job, route, now)

    def _served(self, j: int) -> None:
        """A step on server j succeeded: the client lifts its ban and resets the ban's doubling."""
        self.ban_count[j] = 0
        self.banned_until[j] = float("-inf")
        self.lift_at[j] = float("inf")

    def on_departure(self, job: int, now: float, resource: int) -> None:
        for j, _ in self.routes.get(job, ()):
            self.in_service[j] -= 1
            self._served(j)
        super().on_departure(job, now, resource)

    def _failed_attempt(self, job: int, now: float) -> None:
        k = self.failures.get(job, 0)
        if job not in self._retried:
            self._retried.add(job)
            self.jobs_retried += 1
        self.retries += 1
        if self.max_retries is not None and k + 1 >= self.max_retries:
            for j, m in self.held.pop(job, []):
                self.free[j] += m
            self.failures.pop(job, None)
            self.failed.add(job)
            self.engine.mark_started(job, now)
            self.engine.mark_done(job, now)
            return
        self.failures[job] = k + 1
        delay = 0.0 if k == 0 else min(self.min_backoff * 2.0 ** (k - 1), BACKOFF_MAX_S)
        self.engine.schedule(now + delay, _RETRY, job)


@register("petals", "PETALS baseline: fixed KV pool sizing, lexicographic join placement, per-request "
                    "min-latency routing with retries and back-off (simulated)")
def petals(scenario: Scenario, options: PlanOptions) -> PlanResult:
    order = options.extra.get("petals_join_order", "random")
    reserve = bool(options.extra.get("petals_autograd_reserve", True))
    client = options.extra.get("petals_client", "spec")
    if order not in JOIN_ORDERS:
        return PlanResult("petals", False, f"options.petals_join_order must be one of {', '.join(JOIN_ORDERS)}, "
                          f"not {order!r}", dispatch=None)
    if client not in CLIENT_MODELS:
        return PlanResult("petals", False, f"options.petals_client must be one of {', '.join(CLIENT_MODELS)}, "
                          f"not {client!r}", dispatch=None)
    pp = petals_placement(scenario, options.extra.get("attn_cache_tokens"), order=order, seed=options.seed,
                          autograd_reserve=reserve)
    extra: dict[str, Any] = {"attn_cache_tokens": pp.attn_cache_tokens, "petals_join_order": order,
                             "petals_client": client,
                             "petals_autograd_reserve_gb": autograd_reserve_gb(scenario) if reserve else 0.0,
                             "cache_per_block_gb": pp.cache_per_block_gb,
                             "server_kv_slots": list(pp.slots)}
    # the plan's memory table shows PETALS' own KV pool, not the slots chainplan would give the free memory
    if not pp.feasible:
        return PlanResult("petals", False, pp.reason, placement=pp.placement, dispatch=None, extra=extra,
                          kv_pool=pp.slots)
    result = PlanResult("petals", True, placement=pp.placement, dispatch=None, extra=extra, kv_pool=pp.slots)
    if options.simulate_requests > 0:
        # "deployed": PETALS 2.2's client with its defaults (retries forever, so every request finishes)
        policy = PetalsClientPolicy(scenario, pp) if client == "deployed" else PetalsPolicy(scenario, pp)
        sim = run_slot_policy(scenario, policy, options.simulate_requests, options.seed)
        sim["retries"] = policy.retries
        sim["requests_retried"] = policy.jobs_retried
        if client == "deployed":
            sim["refusals"] = policy.rejections
        result.simulation = sim
    return result
