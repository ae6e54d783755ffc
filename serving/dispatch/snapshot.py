"""The store's snapshot of an adopted plan: its chains, compiled for the dispatcher's stores.

A plan document (chainplan's plan JSON) lists chains as ``servers`` with the
number of ``blocks`` each hop runs, a mean ``service_time_s`` and a
``capacity`` (KV slots, i.e. concurrent jobs).  The dispatcher needs, per
chain, the hops with their block ranges (hop i starts where hop i-1 ended: a
chain runs blocks 0..L-1 in order), and per server the KV block-slots the plan
reserves for it: a job on a chain holds ``num_blocks`` block-slots on every
hop, and a server's slots are the sum over its chains of ``num_blocks * c_k``
(the plan document's ``cache_slots_used``).

The speed order, ranks and cumulative rates come from ``solvers.dispatch_policy``, the core the
simulator's dispatchers use too.  (Formerly ``serving.dispatch.plan``; that path still works.)
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable, Mapping, Sequence

from solvers.dispatch_policy import LIVE_POLICIES, live_policy, ranking
from solvers.plan_format import ChainDoc, PlanFormatError, read_chains

POLICIES = LIVE_POLICIES         # the policies a snapshot may name (the live dispatcher's)
DEFAULT_TTL_S = 30.0


class PlanError(ValueError):
    """The plan cannot be dispatched to (names the problem)."""


# A chain as the stores need it is the plan document's chain (servers, blocks, service time, capacity).
ChainSpec = ChainDoc


def chains_from_document(doc: Mapping[str, Any]) -> list[ChainDoc]:
    """The chains of a plan document, read by the typed plan format (solvers.plan_format)."""
    try:
        chains = read_chains(doc)
    except PlanFormatError as exc:
        raise PlanError(f"the plan is malformed: {exc}") from None
    if not chains:
        raise PlanError("the plan has no chains to dispatch to (an algorithm that routes per request "
                        "cannot be dispatched by chainplan)")
    return list(chains)


def compile_snapshot(plan_id: int | str | None, chains: Sequence[ChainDoc], *, policy: str = "jffc",
                     ttl_s: float = DEFAULT_TTL_S) -> dict[str, Any]:
    """The store's form of a plan (see dispatch.lua): everything the hot path needs precomputed."""
    try:
        live_policy(policy, what="dispatch policy")
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if not (isinstance(ttl_s, (int, float)) and 0.05 <= ttl_s <= 3600):
        raise PlanError(f"lease ttl_s must be between 0.05 and 3600 s, got {ttl_s!r}")
    if not chains:
        raise PlanError("the plan has no chains to dispatch to")
    times, caps, hops, out, L = [], [], [], [], {}
    for k, ch in enumerate(chains):
        t = float(ch.service_time_s)
        if not (t > 0 and math.isfinite(t)):
            raise PlanError(f"chain {k}: service time must be a positive finite number, got {t}")
        if ch.capacity < 0:
            raise PlanError(f"chain {k}: capacity must be >= 0, got {ch.capacity}")
        times.append(t)
        caps.append(int(ch.capacity))
        hk, ok = [], []
        for hop in ch.hops():
            m = int(hop.num_blocks)
            if m <= 0:
                raise PlanError(f"chain {k}: hop {hop.server!r} runs {m} blocks")
            hk.append([hop.server, m])
            ok.append({"server": hop.server, "start_block": int(hop.start_block), "num_blocks": m})
            L[hop.server] = L.get(hop.server, 0) + m * int(ch.capacity)
        hops.append(hk)
        out.append(json.dumps(ok, separators=(",", ":")))
    if sum(caps) == 0:
        raise PlanError("total capacity is 0: no chain can take a job")
    ranked = ranking(times, caps)
    order, rank, cum = list(ranked.order), list(ranked.rank), list(ranked.cum_rates)
    return {
        "plan": plan_id, "policy": policy, "ttl_ms": int(round(ttl_s * 1000)),
        "t": times, "c": caps, "hops": hops, "out": out, "L": L,
        "order": order, "rank": rank, "cum": cum, "keys": [str(k) for k in range(len(times))],
    }


def snapshot_json(snapshot: Mapping[str, Any]) -> tuple[str, str]:
    """(JSON text, fingerprint) of a compiled snapshot; equal plans give equal fingerprints."""
    text = json.dumps(snapshot, separators=(",", ":"), sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()[:32]


def snapshot_from_document(plan_id: int | str | None, doc: Mapping[str, Any], *, policy: str = "jffc",
                           ttl_s: float = DEFAULT_TTL_S) -> dict[str, Any]:
    return compile_snapshot(plan_id, chains_from_document(doc), policy=policy, ttl_s=ttl_s)


def chain_specs(items: Iterable[tuple[Sequence[str], Sequence[int], float, int]]) -> list[ChainDoc]:
    """Shorthand for tests and tools: (servers, blocks, service_time_s, capacity) tuples."""
    return [ChainDoc(servers=tuple(str(x) for x in s), blocks=tuple(int(x) for x in b), service_time_s=float(t),
                     capacity=int(c)) for s, b, t, c in items]
