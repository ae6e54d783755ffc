"""dispatch.lua's state keys by the long names the Python side uses: the one place the two meet.

The script keeps its key names short (each is hashed on every command of the hot path); Python
spells them out.  ``MemoryStore``'s per-cluster state (``memory_store.ClusterState``) has one field
per entry here, holding what that key holds in Redis (tests/dispatch/test_protocol.py checks it),
and ``redis_store`` builds the keys it touches itself from this table.  ``<g>`` is a plan
generation, ``<k>`` a chain, ``<id>`` a lease or ticket id; every key starts with the cluster's
prefix (``AsyncRedisStore.cluster``: ``<prefix>:{c<N>}:``, whose hash tag keeps a planning cluster's keys
in one Redis Cluster slot).
"""

from __future__ import annotations

LUA_KEYS: dict[str, str] = {
    "current_generation": "m",            # hash m (the header), field cur; also policy, ttl, plan id, multi
    "fingerprint": "m",                   # hash m, field fp: the current snapshot's (set_plan is idempotent)
    "generation_counter": "gen",
    "plans": "plan:<g>",                  # (and planx:<g>, pg:<g>) the compiled snapshot of generation g
    "in_progress": "z:<g>",               # chain -> jobs in service (Z_k)
    "free_chains": "free:<g>",            # chains with a free slot, by speed rank (JFFC's choice)
    "server_used": "srv",                 # server -> KV block-slots held by jobs in flight
    "server_limit": "lim",                # server -> block-slots it may hold now
    "leases_in_flight": "gin",            # generation -> leases in flight
    "leases": "lease",                    # lease id -> its record (and dl: deadlines)
    "queue": "q",                         # the central FIFO queue
    "committed_queues": "q:<g>:<k>",      # per-chain FIFO queues (jsq, sed, random)
    "tickets": "tk",                      # waiter id -> {seq, t0, dl, k}
    "ticket_seq": "seq",
    "mailbox": "w:<id>",                  # the lease granted to a waiter
    "counters": "st",                     # arrivals, releases, expiries, timeouts, wait_ms, nq
    "wait_histogram": "wh",               # bucket -> grants
    "service_times": "svc:<g>",           # "<k>:n" / "<k>:s": completed jobs and their summed time (ms)
    "arrivals_per_second": "arr",
    "first_arrival": "first",
    # liveness and masking (liveness.py's rules)
    "server_states": "sv",                # server -> its liveness record (JSON)
    "server_info": "svi",                 # server -> the last heartbeat's info (JSON)
    "liveness_deadlines": "lvdl",         # server -> when the rules over time may next change it (ms)
    "liveness_next": "m",                 # hash m, field lvn: the earliest of those deadlines
    "masked_chains": "mk:<g>",            # chain -> its servers in a masking state (current generation)
    "events": "ev",                       # stream of state transitions (ids 0-<n>)
    "event_seq": "evn",
}


def lua_key(name: str, **parts: object) -> str:
    """The key (after the cluster's prefix) of ``name``, with ``<g>``/``<k>``/``<id>`` filled in."""
    key = LUA_KEYS[name]
    for part, value in parts.items():
        key = key.replace(f"<{part}>", str(value))
    return key
