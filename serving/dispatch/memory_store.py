"""The dispatcher's state in this process: the embedded default (single node, no Redis).

A port of dispatch.lua onto plain Python structures, so that both stores have one
meaning; tests/dispatch runs the same checks against both, and test_replay.py checks
both against the simulator.  The Lua script's short keys are spelled out here
(``ClusterState``'s fields; lua_keys.py maps one to the other), and JFFC's choice is
``solvers.dispatch_policy.FreeChains``, the simulator's own.  A generation's plan is the
snapshot ``snapshot.compile_snapshot`` made (its short keys are the snapshot format Lua reads).

All operations run under one lock (they are short and never block); waiters wait
on an asyncio future (or a threading event for the blocking API) that the
operation freeing a slot resolves.  Only one process may use a MemoryStore:
several web processes need Redis.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from solvers.dispatch_policy import FreeChains, jsq_key, rate_proportional_pick, sed_key

from . import liveness as lv
from .protocol import (EVENTS_KEPT, HEARTBEAT_STATES, MASKING_STATES, SWEEP_SLICE_S, EventJSON, LeaseJSON,
                       NoAdoptedPlan, NoFreeChain, ReleasedJSON, RenewalJSON, ServerStateJSON, check_args,
                       check_cause, check_events_args, check_failed, check_info, check_server, check_server_state,
                       events_from_raw, lease_from_raw, new_id, released_from_raw, renewal_from_raw,
                       server_list_from_raw, server_state_from_raw, state_from_raw)
from .snapshot import snapshot_json

WAIT_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000]
ARRIVAL_WINDOW_S = 60


@dataclass(slots=True)
class _Lease:
    generation: int
    chain: int
    granted_ms: float
    deadline_ms: float


@dataclass(slots=True)
class _Ticket:
    """A waiter: ``chain`` is the chain it is committed to (jsq, sed, random), -1 in the central queue."""

    seq: int
    queued_ms: float
    deadline_ms: float
    chain: int


@dataclass
class ClusterState:
    """One cluster's state; each field holds what the Lua key ``lua_keys.LUA_KEYS[field]`` holds."""

    current_generation: int | None = None
    fingerprint: str | None = None
    generation_counter: int = 0
    plans: dict[int, dict[str, Any]] = field(default_factory=dict)
    in_progress: dict[int, list[int]] = field(default_factory=dict)
    free_chains: dict[int, FreeChains] = field(default_factory=dict)
    server_used: dict[str, int] = field(default_factory=dict)
    server_limit: dict[str, int] = field(default_factory=dict)
    leases_in_flight: dict[int, int] = field(default_factory=dict)
    leases: dict[str, _Lease] = field(default_factory=dict)
    queue: deque[str] = field(default_factory=deque)
    committed_queues: dict[tuple[int, int], deque[str]] = field(default_factory=dict)
    tickets: dict[str, _Ticket] = field(default_factory=dict)
    ticket_seq: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    wait_histogram: dict[int, int] = field(default_factory=dict)
    service_times: dict[int, dict[str, float]] = field(default_factory=dict)
    arrivals_per_second: dict[int, int] = field(default_factory=dict)
    first_arrival: int | None = None
    # liveness (liveness.py's records) and masking
    server_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    server_info: dict[str, str] = field(default_factory=dict)
    liveness_deadlines: dict[str, int] = field(default_factory=dict)
    liveness_next: int | None = None
    masked_chains: dict[int, dict[int, int]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    event_seq: int = 0


class _Waiter:
    """Where a queued acquire learns its lease: a future on the event loop, or an event for a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None):
        self.loop = loop
        self.future = loop.create_future() if loop else None
        self.event = None if loop else threading.Event()
        self.value: dict[str, Any] | None = None
        self.keep = False         # enqueue(): kept until granted() collects it

    def give(self, resp: dict[str, Any]) -> None:
        self.value = resp
        if self.future is not None:
            self.loop.call_soon_threadsafe(lambda: self.future.done() or self.future.set_result(resp))
        else:
            self.event.set()


class MemoryStore:
    """One process's dispatcher state (a ``protocol.DispatchStore``; ``acquire_blocking`` for threads)."""

    def __init__(self, clock_ms: Callable[[], float] | None = None, rng: random.Random | None = None,
                 liveness: lv.LivenessConfig | None = None):
        self._clock = clock_ms or (lambda: time.time() * 1000.0)
        self._rng = rng or random.Random()
        self.liveness = liveness or lv.LivenessConfig.from_env()
        self._lv_args = self.liveness.args()
        self._lock = threading.RLock()
        self._c: dict[int, ClusterState] = {}
        self._tokens: dict[str, int] = {}
        self._waiters: dict[tuple[int, str], _Waiter] = {}
        self._claims: dict[str, float] = {}
        self.now = 0

    # -- the port of dispatch.lua (called under the lock, self.now set) ------
    def _cl(self, cluster: int) -> ClusterState:
        c = self._c.get(cluster)
        if c is None:
            c = self._c[cluster] = ClusterState()
        return c

    def _inc(self, c: ClusterState, key: str, by: float = 1) -> None:
        c.counters[key] = c.counters.get(key, 0) + by

    @staticmethod
    def _fits(c: ClusterState, p: dict, k: int) -> bool:
        """Room on every server of chain k for one more job (binds only while an older plan is in flight)."""
        return all(c.server_used.get(s, 0) + m <= c.server_limit.get(s, 0) for s, m in p["hops"][k])

    def _is_free(self, c: ClusterState, p: dict, g: int, k: int) -> bool:
        cap = p["c"][k]
        if cap <= 0 or c.in_progress[g][k] >= cap or c.masked_chains.get(g, {}).get(k):
            return False
        return self._fits(c, p, k)

    def _fastest_free(self, c: ClusterState, p: dict, g: int) -> int | None:
        """JFFC: the fastest chain of generation g that can take one more job."""
        return c.free_chains[g].fastest(lambda k: self._fits(c, p, k))

    def _recompute_limits(self, c: ClusterState, g: int) -> None:
        lim = dict(c.plans[g]["L"])
        for og in c.leases_in_flight:
            if og != g and og in c.plans:
                for s, v in c.plans[og]["L"].items():
                    if s in lim and v < lim[s]:
                        lim[s] = v
        c.server_limit = lim

    def _drop_generation(self, c: ClusterState, g: int) -> None:
        p = c.plans.pop(g, None)
        c.masked_chains.pop(g, None)
        c.in_progress.pop(g, None)
        c.free_chains.pop(g, None)
        c.service_times.pop(g, None)
        if p is not None:
            for k in range(len(p["c"])):
                c.committed_queues.pop((g, k), None)

    def _grant(self, cluster: int, c: ClusterState, p: dict, g: int, k: int, lid: str, t0: float,
               mailbox: bool) -> dict[str, Any]:
        now = self.now
        c.in_progress[g][k] += 1
        if c.in_progress[g][k] == p["c"][k]:
            c.free_chains[g].filled(k)
        for s, m in p["hops"][k]:
            c.server_used[s] = c.server_used.get(s, 0) + m
        c.leases_in_flight[g] = c.leases_in_flight.get(g, 0) + 1
        dl = now + p["ttl_ms"]
        c.leases[lid] = _Lease(g, k, now, dl)
        waited = max(0, now - t0)
        self._inc(c, "grants")
        self._inc(c, "wait_ms", waited)
        b = next((i + 1 for i, edge in enumerate(WAIT_BUCKETS) if waited <= edge), len(WAIT_BUCKETS) + 1)
        c.wait_histogram[b] = c.wait_histogram.get(b, 0) + 1
        resp = {"lease": lid, "chain": k, "servers": p["servers"][k], "ttl_ms": p["ttl_ms"],
                "expires_ms": dl, "waited_ms": waited, "plan": p["plan"]}
        if mailbox:
            w = self._waiters.get((cluster, lid))
            if w is not None:    # else the waiter is gone: the lease expires by itself, as in Redis
                if not w.keep:
                    del self._waiters[(cluster, lid)]
                w.give(resp)
        return resp

    def _head(self, c: ClusterState, q: deque, counted: bool) -> tuple[str | None, dict | None]:
        while q:
            lid = q[0]
            t = c.tickets.get(lid)
            if t is not None:
                if t.deadline_ms >= self.now:
                    return lid, t
                del c.tickets[lid]
                self._inc(c, "timeouts")
                if counted:
                    self._inc(c, "nq", -1)
            q.popleft()
        return None, None

    def _drain(self, cluster: int, c: ClusterState) -> None:
        g = c.current_generation
        if g is None:
            return
        p = c.plans[g]
        while True:
            best = None       # (id, ticket, k, queue, counted)
            lid, t = self._head(c, c.queue, False)
            if lid is not None:
                k = self._fastest_free(c, p, g)
                if k is not None:
                    best = (lid, t, k, c.queue, False)
            if c.counters.get("nq", 0) > 0:
                for k in range(len(p["c"])):
                    qk = c.committed_queues.get((g, k))
                    if qk:
                        lid2, t2 = self._head(c, qk, True)
                        if lid2 is not None and (best is None or t2.seq < best[1].seq) \
                                and self._is_free(c, p, g, k):
                            best = (lid2, t2, k, qk, True)
            if best is None:
                return
            lid, t, k, q, counted = best
            q.popleft()
            del c.tickets[lid]
            if counted:
                self._inc(c, "nq", -1)
            self._grant(cluster, c, p, g, k, lid, t.queued_ms, True)

    def _release(self, c: ClusterState, lid: str, kind: str) -> bool:
        lease = c.leases.pop(lid, None)
        if lease is None:
            return False
        g, k = lease.generation, lease.chain
        p = c.plans.get(g)
        c.in_progress[g][k] -= 1
        if p is not None:
            if c.in_progress[g][k] == p["c"][k] - 1 and not c.masked_chains.get(g, {}).get(k):
                c.free_chains[g].freed(k)
            for s, m in p["hops"][k]:
                c.server_used[s] = c.server_used.get(s, 0) - m
        if kind == "release":
            self._inc(c, "releases")
            d = self.now - lease.granted_ms
            svc = c.service_times.setdefault(g, {})
            svc[f"{k}:n"] = svc.get(f"{k}:n", 0) + 1
            svc[f"{k}:s"] = svc.get(f"{k}:s", 0) + d
            if c.server_states and p is not None:
                self._lv_success(c, p, k)
        elif kind == "failed":        # a failed request's time is no service time
            self._inc(c, "releases")
            self._inc(c, "failures")
        elif kind == "revoked":
            self._inc(c, "revoked")
        else:
            self._inc(c, "expiries")
        c.leases_in_flight[g] -= 1
        if c.leases_in_flight[g] <= 0:
            del c.leases_in_flight[g]
            if c.current_generation != g:
                self._drop_generation(c, g)
                if c.current_generation is not None:
                    self._recompute_limits(c, c.current_generation)
        return True

    def _sweep(self, cluster: int, c: ClusterState) -> int:
        if c.liveness_next is not None and self.now >= c.liveness_next:
            self._lv_tick(cluster, c)
        gone = sorted((lease.deadline_ms, lid) for lid, lease in c.leases.items() if lease.deadline_ms <= self.now)[:256]
        for _, lid in gone:
            self._release(c, lid, "expiry")
        if gone:
            self._drain(cluster, c)
        return len(gone)

    def _count_arrival(self, c: ClusterState) -> None:
        sec = int(self.now // 1000)
        self._inc(c, "arrivals")
        c.arrivals_per_second[sec] = c.arrivals_per_second.get(sec, 0) + 1
        if c.first_arrival is None:
            c.first_arrival = self.now
        if len(c.arrivals_per_second) > 2 * ARRIVAL_WINDOW_S + 8:
            for s in [s for s in c.arrivals_per_second if s <= sec - ARRIVAL_WINDOW_S]:
                del c.arrivals_per_second[s]

    def _arrival_rate(self, c: ClusterState) -> float | None:
        if c.first_arrival is None:
            return None
        sec = int(self.now // 1000)
        n = sum(v for s, v in c.arrivals_per_second.items() if s > sec - ARRIVAL_WINDOW_S)
        span = min(ARRIVAL_WINDOW_S, max(1.0, (self.now - c.first_arrival) / 1000))
        return n / span

    def _choose(self, c: ClusterState, p: dict, g: int, policy: str, u: float) -> int:
        """The immediate-dispatch policies: the chain a job is committed to (keys of solvers.dispatch_policy);
        masked chains are left out (-1: every chain is masked, the job waits in the central queue)."""
        masked = c.masked_chains.get(g) or {}
        if policy == "random":
            if not masked:
                return rate_proportional_pick(p["cum"], u)
            # the unmasked chains' rates, summed in index order as dispatch.lua does
            cum, total, last = [], 0.0, -1
            for k in range(len(p["c"])):
                if k not in masked and p["c"][k] > 0:
                    total += p["c"][k] / p["t"][k]
                    last = k
                cum.append(total)
            if total <= 0:
                return -1
            x = u * total
            return next((k for k in range(len(cum)) if cum[k] > x), last)
        best = None
        for k in range(len(p["c"])):
            cap = p["c"][k]
            if cap <= 0 or k in masked:
                continue
            n = c.in_progress[g][k] + len(c.committed_queues.get((g, k), ()))
            key = jsq_key(n, cap) if policy == "jsq" else sed_key(n, cap, p["t"][k])
            cand = (key, p["rank"][k], k)
            if best is None or cand < best:
                best = cand
        return best[2] if best is not None else -1

    def _requeue_committed(self, c: ClusterState, g: int) -> None:
        p = c.plans.get(g)
        if p is None or c.counters.get("nq", 0) <= 0:
            return
        live = []
        for q in [c.queue] + [c.committed_queues.pop((g, k), deque()) for k in range(len(p["c"]))]:
            for lid in q:
                t = c.tickets.get(lid)
                if t is not None:
                    t.chain = -1
                    live.append((t.seq, lid))
        c.counters["nq"] = 0
        c.queue = deque(lid for _, lid in sorted(live))

    # -- liveness and masking: liveness.py's rules (dispatch.lua's lv_* functions mirror these) -------
    def _server(self, c: ClusterState, s: str) -> dict[str, Any]:
        return c.server_states.get(s) or lv.new_record()

    def _lv_write(self, cluster: int, c: ClusterState, s: str, old: dict, new: dict, cause: str | None) -> None:
        """Store a server's new record; a change of state is an event, and masks or unmasks its chains."""
        c.server_states[s] = new
        dl = lv.deadline(new)
        if dl is None:
            c.liveness_deadlines.pop(s, None)
        else:
            c.liveness_deadlines[s] = dl
        c.liveness_next = min(c.liveness_deadlines.values()) if c.liveness_deadlines else None
        if old["state"] != new["state"]:
            c.event_seq += 1
            c.events.append({"id": c.event_seq, "server": s, "state": new["state"], "prev": old["state"],
                             "at": self.now, "cause": cause or ""})
            was, masking = old["state"] in MASKING_STATES, new["state"] in MASKING_STATES
            if was != masking:
                self._mask_server(cluster, c, s, 1 if masking else -1)

    def _mask_server(self, cluster: int, c: ClusterState, s: str, delta: int) -> None:
        """Server ``s`` entered (+1) or left (-1) a masking state: the current plan's chains through it."""
        g = c.current_generation
        if g is None:
            return
        p = c.plans[g]
        masked = c.masked_chains.setdefault(g, {})
        for k, hops in enumerate(p["hops"]):
            if not any(h[0] == s for h in hops):
                continue
            n = masked.get(k, 0) + delta
            has_room = p["c"][k] > 0 and c.in_progress[g][k] < p["c"][k]
            if delta > 0 and n == 1:
                masked[k] = n
                if has_room:
                    c.free_chains[g].filled(k)
                self._requeue_chain(c, g, k)
            elif n <= 0:
                masked.pop(k, None)
                if has_room:
                    c.free_chains[g].freed(k)
            else:
                masked[k] = n
        self._drain(cluster, c)

    def _requeue_chain(self, c: ClusterState, g: int, k: int) -> None:
        """Waiters committed to masked chain k move to the central queue, in arrival order."""
        qk = c.committed_queues.pop((g, k), None)
        if not qk:
            return
        live = [(t.seq, lid) for lid in c.queue if (t := c.tickets.get(lid)) is not None]
        for lid in qk:
            t = c.tickets.get(lid)
            if t is not None:
                t.chain = -1
                live.append((t.seq, lid))
                self._inc(c, "nq", -1)
        c.queue = deque(lid for _, lid in sorted(live))

    def _compute_masks(self, c: ClusterState, g: int) -> None:
        """A new generation's masked chains, from the servers' states."""
        p = c.plans[g]
        masked: dict[int, int] = {}
        if c.server_states:
            for k, hops in enumerate(p["hops"]):
                n = sum(1 for h in hops if (r := c.server_states.get(h[0])) is not None
                        and r["state"] in MASKING_STATES)
                if n:
                    masked[k] = n
        c.masked_chains[g] = masked
        for k in masked:
            if p["c"][k] > 0:
                c.free_chains[g].filled(k)

    def _lv_tick(self, cluster: int, c: ClusterState) -> None:
        due = sorted((dl, s) for s, dl in c.liveness_deadlines.items() if dl <= self.now)
        for _, s in due:
            old = self._server(c, s)
            new, cause = lv.on_tick(old, self.now)
            self._lv_write(cluster, c, s, old, new, cause)

    def _lv_success(self, c: ClusterState, p: dict, k: int) -> None:
        for s, _ in p["hops"][k]:
            rec = c.server_states.get(s)
            if rec is not None:
                new = lv.on_success(rec)
                if new is not None:
                    c.server_states[s] = new        # no state change: no event, same deadline

    def _down_on(self, c: ClusterState, g: int, k: int) -> str | None:
        """The first server of chain k of generation g that is down, or None."""
        for s, _ in c.plans[g]["hops"][k]:
            rec = c.server_states.get(s)
            if rec is not None and rec["state"] == "down":
                return s
        return None

    def _op_fail(self, cluster: int, lid: str, server: str, error: str) -> dict[str, Any]:
        """Release with a failure report, atomically: the server's new state (and masks) before the slot frees."""
        c = self._cl(cluster)
        self._sweep(cluster, c)
        lease = c.leases.get(lid)
        if lease is None:
            return {"released": False, "server": server, "server_state": self._server(c, server)["state"]}
        names = [h[0] for h in c.plans[lease.generation]["hops"][lease.chain]]
        if server not in names:
            return {"error": "not_on_chain", "server": server, "servers": names}
        old = self._server(c, server)
        new, cause = lv.on_failure(old, lid, error, self.now, self._lv_args[0], self._lv_args[1])
        self._lv_write(cluster, c, server, old, new, cause)
        self._release(c, lid, "failed")
        self._drain(cluster, c)
        return {"released": True, "server": server, "server_state": new["state"]}

    def _op_heartbeat(self, cluster: int, server: str, state: str, info: str) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        old = self._server(c, server)
        new, cause = lv.on_heartbeat(old, state, self.now, self._lv_args[2])
        self._lv_write(cluster, c, server, old, new, cause)
        if info:
            c.server_info[server] = info
        return new

    def _op_setstate(self, cluster: int, server: str, state: str, cause: str) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        old = self._server(c, server)
        new, why = lv.on_set(old, state, self.now, cause, *self._lv_args)
        self._lv_write(cluster, c, server, old, new, why)
        return new

    def _plan_servers(self, c: ClusterState) -> list[str]:
        g = c.current_generation
        return list(c.plans[g]["L"]) if g is not None else []

    def _op_servers(self, cluster: int) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        out = {s: self._server(c, s) for s in self._plan_servers(c)}
        out.update(c.server_states)
        return {"servers": out, "info": dict(c.server_info)}

    def _op_events(self, cluster: int, after: int, limit: int) -> list[dict[str, Any]]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        return [e for e in c.events if e["id"] > after][:limit]

    def _op_acquire(self, cluster: int, lid: str, policy: str, u: float, wait_ms: int) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        g = c.current_generation
        if g is None:
            return {"error": "no_plan"}
        p = c.plans[g]
        policy = policy or p["policy"]
        self._count_arrival(c)
        k, committed = None, -1
        if policy == "jffc":
            if self._head(c, c.queue, False)[0] is None:
                k = self._fastest_free(c, p, g)
        else:
            kc = self._choose(c, p, g, policy, u)
            if kc >= 0 and not c.committed_queues.get((g, kc)) and self._head(c, c.queue, False)[0] is None \
                    and self._is_free(c, p, g, kc):
                k = kc
            committed = kc
        if k is not None:
            return self._grant(cluster, c, p, g, k, lid, self.now, False)
        if wait_ms <= 0:
            return {"queued": False, "position": len(c.tickets) + 1}
        c.ticket_seq += 1
        c.tickets[lid] = _Ticket(c.ticket_seq, self.now, self.now + wait_ms, committed)
        if committed >= 0:
            c.committed_queues.setdefault((g, committed), deque()).append(lid)
            self._inc(c, "nq")
        else:
            c.queue.append(lid)
        return {"queued": True, "position": len(c.tickets)}

    def _op_cancel(self, cluster: int, lid: str) -> dict[str, Any]:
        c = self._cl(cluster)
        t = c.tickets.pop(lid, None)
        if t is None:
            return {"queued": False, "position": 0}   # granted meanwhile: the waiter has it already
        self._inc(c, "timeouts")
        if t.chain >= 0:
            self._inc(c, "nq", -1)
            q = c.committed_queues.get((c.current_generation, t.chain))
            if q is not None and lid in q:
                q.remove(lid)
            elif lid in c.queue:
                c.queue.remove(lid)
        elif lid in c.queue:
            c.queue.remove(lid)
        return {"queued": False, "position": 0}

    def _op_plan(self, cluster: int, snap: Mapping[str, Any] | None, fp: str) -> int:
        c = self._cl(cluster)
        old = c.current_generation
        if old is not None and snap is not None and c.fingerprint == fp:
            return old
        if old is not None:
            c.masked_chains.pop(old, None)      # masks are kept for the plan dispatched to only
            self._requeue_committed(c, old)
            if c.leases_in_flight.get(old, 0) <= 0:
                self._drop_generation(c, old)
        if snap is None:
            c.current_generation = c.fingerprint = None
            return 0
        c.generation_counter += 1
        g = c.generation_counter
        p = dict(snap)
        p["servers"] = [json.loads(o) for o in p["out"]]
        c.plans[g] = p
        c.in_progress[g] = [0] * len(p["c"])
        c.free_chains[g] = FreeChains(p["order"], p["rank"], p["c"])
        c.current_generation, c.fingerprint = g, fp
        self._compute_masks(c, g)
        self._recompute_limits(c, g)
        self._sweep(cluster, c)
        self._drain(cluster, c)
        return g

    def _op_state(self, cluster: int) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        self._drain(cluster, c)
        servers = {s: {"used": v} for s, v in c.server_used.items()}
        for s, v in c.server_limit.items():
            servers.setdefault(s, {"used": 0})["limit"] = v
        out: dict[str, Any] = {
            "now_ms": self.now, "waiting": len(c.tickets), "stats": dict(c.counters),
            "wait_histogram": sorted([b, n] for b, n in c.wait_histogram.items()), "wait_buckets_ms": WAIT_BUCKETS,
            "arrival_rate": self._arrival_rate(c), "servers": servers,
            "generations": [{"generation": g, "in_flight": n, "plan": c.plans[g]["plan"],
                             "capacity": c.plans[g]["c"], "in_progress": list(c.in_progress[g]),
                             "hops": c.plans[g]["hops"], "L": c.plans[g]["L"]}
                            for g, n in c.leases_in_flight.items() if g in c.plans],
        }
        states = {s: {"state": "up", "since": 0} for s in self._plan_servers(c)}
        states.update({s: {"state": r["state"], "since": r["since"]} for s, r in c.server_states.items()})
        out["server_states"] = states
        if c.current_generation is None:
            out["plan"] = None
            return out
        g = c.current_generation
        p = c.plans[g]
        svc = c.service_times.get(g, {})
        masked = c.masked_chains.get(g) or {}
        out.update(generation=g, plan=p["plan"], policy=p["policy"], chains=[
            {"chain": k, "capacity": p["c"][k], "in_progress": c.in_progress[g][k], "masked": k in masked,
             "service_time_s": p["t"][k],
             "measured_service_time_s": (svc[f"{k}:s"] / svc[f"{k}:n"] / 1000) if svc.get(f"{k}:n") else None,
             "completed": int(svc.get(f"{k}:n", 0)), "waiting": len(c.committed_queues.get((g, k), ()))}
            for k in range(len(p["c"]))])
        return out

    def _call(self, name: str, *args: Any) -> Any:
        with self._lock:
            self.now = int(math.floor(self._clock()))
            return getattr(self, "_op_" + name)(*args)

    def _op_release(self, cluster: int, lid: str) -> bool:
        c = self._cl(cluster)
        ok = self._release(c, lid, "release")
        if c.tickets:            # as dispatch.lua: expired leases matter only to waiters (acquire sweeps first)
            self._sweep(cluster, c)
            self._drain(cluster, c)
        return ok

    def _op_renew(self, cluster: int, lid: str) -> dict[str, Any]:
        c = self._cl(cluster)
        self._sweep(cluster, c)
        lease = c.leases.get(lid)
        if lease is None:
            self._drain(cluster, c)
            return {"gone": True}
        if c.server_states:
            down = self._down_on(c, lease.generation, lease.chain)
            if down is not None:        # the request cannot finish: the lease ends, the client is told why
                self._release(c, lid, "revoked")
                self._drain(cluster, c)
                return {"gone": True, "server": down}
        ttl = c.plans[lease.generation]["ttl_ms"]
        lease.deadline_ms = self.now + ttl
        return {"ttl_ms": ttl, "expires_ms": lease.deadline_ms}

    def _op_sweep(self, cluster: int) -> int:
        c = self._cl(cluster)
        n = self._sweep(cluster, c)
        self._drain(cluster, c)
        return n

    # -- protocol.DispatchStore (as AsyncRedisStore) ---------------------------
    def _submit(self, cluster: int, wait_s: Any, policy: Any, uniform: float | None,
                loop: asyncio.AbstractEventLoop | None, *, keep: bool = False
                ) -> tuple[str, dict[str, Any], _Waiter | None, float]:
        """Checked arguments into the acquire operation; a queued request gets its waiter under the same lock."""
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        with self._lock:
            self.now = int(math.floor(self._clock()))
            d = self._op_acquire(int(cluster), lid, policy, u, int(wait_s * 1000))
            w = None
            if d.get("queued"):
                w = self._waiters[(int(cluster), lid)] = _Waiter(loop)
                w.keep = keep
        return lid, d, w, wait_s

    def _start(self, cluster: int, wait_s: Any, policy: Any, uniform: float | None,
               loop: asyncio.AbstractEventLoop | None) -> tuple[str, dict[str, Any], _Waiter | None, float]:
        lid, d, w, wait_s = self._submit(cluster, wait_s, policy, uniform, loop)
        if d.get("error") == "no_plan":
            raise NoAdoptedPlan.for_cluster(cluster)
        if "lease" not in d and not d.get("queued"):
            raise NoFreeChain.after_wait(d.get("position", 1), 0)
        return lid, d, w, wait_s

    def _give_up(self, cluster: int, lid: str, w: _Waiter, d: dict, wait_s: float) -> LeaseJSON:
        with self._lock:
            self._waiters.pop((int(cluster), lid), None)
            if w.value is not None:
                return lease_from_raw(w.value)
            self.now = int(math.floor(self._clock()))
            self._op_cancel(int(cluster), lid)
        raise NoFreeChain.after_wait(d.get("position", 1), wait_s)

    async def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                      uniform: float | None = None) -> LeaseJSON:
        lid, d, w, wait_s = self._start(cluster, wait_s, policy, uniform, asyncio.get_running_loop())
        if w is None:
            return lease_from_raw(d)
        end = time.monotonic() + wait_s
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return self._give_up(cluster, lid, w, d, wait_s)
                try:
                    return lease_from_raw(await asyncio.wait_for(asyncio.shield(w.future),
                                                                 timeout=min(left, SWEEP_SLICE_S)))
                except asyncio.TimeoutError:
                    self._call("sweep", int(cluster))
        except asyncio.CancelledError:
            self._give_up_quietly(cluster, lid, w)
            raise

    def _give_up_quietly(self, cluster: int, lid: str, w: _Waiter) -> None:
        """A waiter that went away (client disconnected): leave the queue, or hand back its lease."""
        with self._lock:
            self._waiters.pop((int(cluster), lid), None)
            self.now = int(math.floor(self._clock()))
            if w.value is not None:
                self._op_release(int(cluster), lid)
            else:
                self._op_cancel(int(cluster), lid)

    def acquire_blocking(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                         uniform: float | None = None) -> LeaseJSON:
        lid, d, w, wait_s = self._start(cluster, wait_s, policy, uniform, None)
        if w is None:
            return lease_from_raw(d)
        end = time.monotonic() + wait_s
        while (left := end - time.monotonic()) > 0:
            if w.event.wait(min(left, SWEEP_SLICE_S)):
                return lease_from_raw(w.value)
            self._call("sweep", int(cluster))
        return self._give_up(cluster, lid, w, d, wait_s)

    async def enqueue(self, cluster: int, *, policy: str | None = None, wait_s: float = 30.0,
                      uniform: float | None = None) -> tuple[str, dict[str, Any]]:
        lid, d, _, _ = self._submit(cluster, wait_s, policy, uniform, None, keep=True)
        return lid, d

    async def granted(self, cluster: int, lid: str) -> LeaseJSON | None:
        with self._lock:
            w = self._waiters.get((int(cluster), lid))
            if w is None or w.value is None:
                return None
            del self._waiters[(int(cluster), lid)]
            return lease_from_raw(w.value)

    async def release(self, cluster: int, lease: str, *, failed: Mapping[str, str] | None = None
                      ) -> "bool | ReleasedJSON":
        if failed is None:
            return self._call("release", int(cluster), str(lease))
        f = check_failed(failed)
        return released_from_raw(str(lease), self._call("fail", int(cluster), str(lease), f["server"],
                                                        f["error"][:lv.MAX_CAUSE]))

    async def renew(self, cluster: int, lease: str) -> RenewalJSON | None:
        return renewal_from_raw(self._call("renew", int(cluster), str(lease)), str(lease))

    async def set_server_state(self, cluster: int, server: str, state: str, *, cause: str = ""
                               ) -> ServerStateJSON:
        server, state = check_server(server), check_server_state(state)
        return server_state_from_raw(server, self._call("setstate", int(cluster), server, state, check_cause(cause)))

    async def heartbeat(self, cluster: int, server: str, *, state: str = "up",
                        info: Mapping[str, Any] | None = None) -> ServerStateJSON:
        server, state = check_server(server), check_server_state(state, HEARTBEAT_STATES)
        return server_state_from_raw(server, self._call("heartbeat", int(cluster), server, state, check_info(info)))

    async def server_states(self, cluster: int) -> list[ServerStateJSON]:
        return server_list_from_raw(self._call("servers", int(cluster)))

    async def events(self, cluster: int, after: int | None = None, limit: int = 500) -> list[EventJSON]:
        after, limit = check_events_args(after, limit)
        return events_from_raw(self._call("events", int(cluster), after, limit))

    async def state(self, cluster: int) -> dict[str, Any]:
        return state_from_raw(self._call("state", int(cluster)))

    async def sweep(self, cluster: int) -> int:
        return self._call("sweep", int(cluster))

    async def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int:
        if snapshot is None:
            return self._call("plan", int(cluster), None, "")
        _, fp = snapshot_json(snapshot)
        return self._call("plan", int(cluster), snapshot, fp)

    async def clusters(self) -> list[int]:
        with self._lock:
            return sorted(k for k, c in self._c.items() if c.current_generation is not None)

    async def put_token(self, digest: str, cluster: int) -> None:
        self._tokens[digest] = int(cluster)

    async def drop_token(self, digest: str) -> None:
        self._tokens.pop(digest, None)

    async def token_cluster(self, digest: str) -> int | None:
        return self._tokens.get(digest)

    async def ping(self) -> bool:
        return True

    async def claim(self, name: str, ttl_s: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._claims.get(name, 0) > now:
                return False
            self._claims[name] = now + ttl_s
            return True

    async def clear(self) -> None:
        with self._lock:
            self._c.clear()
            self._tokens.clear()

    async def close(self) -> None:
        pass
