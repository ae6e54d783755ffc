"""Churn under load, on both stores: random downs and ups, drains, joins, heartbeats that stop, failure
reports, clients killed mid-request (their leases left to expire) and plan switches.

At every sampled instant (one atomic state read): no chain over its capacity, no server over its KV
slots (test_live.check_instant), and a chain is masked exactly when one of its servers is not up.
Afterwards, from the grants' and the transitions' times on the store's clock: no grant landed on a
chain after one of its servers entered a masking state and before it left it.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import datetime

from serving.dispatch.liveness import LivenessConfig
from serving.dispatch.protocol import MASKING_STATES, NoFreeChain, ServerDown

from .conftest import run, snapshot
from .test_live import PLAN_A, PLAN_B, check_instant

SERVERS = ["a", "b", "c", "d"]
PLANS = {1: PLAN_A, 2: PLAN_B}
TTL_S = 0.5
HEARTBEAT_TIMEOUT_S = 0.6
SECONDS = float(os.environ.get("CHAINPLAN_CHURN_STRESS_S", "6"))


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


async def churn(store, seed: int) -> dict:
    rng = random.Random(seed)
    await store.set_plan(1, snapshot(PLAN_A, plan_id=1, ttl_s=TTL_S))
    stop = asyncio.Event()
    grants, errors = [], []
    counts = {"samples": 0, "killed": 0, "reported": 0, "server_down": 0, "timeouts": 0, "masked_seen": 0}
    dead: set[str] = set()            # servers the chaos took down: clients report their hops as failed

    async def client(i: int) -> None:
        crng = random.Random(seed * 100 + i)
        while not stop.is_set():
            try:
                lease = await store.acquire(1, wait_s=1.0)
            except NoFreeChain:
                counts["timeouts"] += 1
                continue
            hops = [h["server"] for h in lease["servers"]]
            grants.append((ms(lease["expires_at"]) - round(lease["ttl_s"] * 1000), lease["plan"], lease["chain"],
                           hops))
            gone = False
            for _ in range(crng.choice([0, 0, 1, 1, 2, 3])):   # hold it a while, renewing as the client library does
                await asyncio.sleep(crng.uniform(0.002, 0.06) if crng.random() < 0.8 else TTL_S / 3)
                try:
                    if await store.renew(1, lease["lease"]) is None:
                        gone = True
                except ServerDown:
                    counts["server_down"] += 1
                    gone = True
                if gone:
                    break
            if gone:
                continue
            roll = crng.random()
            if roll < 0.05:
                counts["killed"] += 1                   # killed mid-request: the lease is left to expire
                continue
            bad = [s for s in hops if s in dead]
            if bad or roll < 0.12:
                counts["reported"] += 1
                await store.release(1, lease["lease"], failed={"server": bad[0] if bad else crng.choice(hops),
                                                                "error": "stress"})
            else:
                await store.release(1, lease["lease"])

    async def chaos() -> None:
        plan = 1
        masked: set[str] = set()
        next_switch = asyncio.get_running_loop().time() + 1.0
        quiet: dict[str, float] = {}    # a server that sent a heartbeat is left alone until its timeout ran out
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.1, 0.35))
            now = asyncio.get_running_loop().time()
            free = [s for s in SERVERS if quiet.get(s, 0.0) <= now]
            server = rng.choice(free or SERVERS)
            roll = rng.random()
            if roll < 0.25:
                state = rng.choice(["down", "down", "draining", "joining", "suspect"])
                await store.set_server_state(1, server, state, cause="stress")
                masked.add(server)
                if state == "down":
                    dead.add(server)
            elif roll < 0.8:
                server = rng.choice(sorted(masked & set(free))) if masked & set(free) else server
                await store.set_server_state(1, server, "up", cause="stress")
                dead.discard(server)
                masked.discard(server)
            else:
                await store.heartbeat(1, server)        # then silent: down by the timeout, while clients run
                quiet[server] = now + HEARTBEAT_TIMEOUT_S + 0.5
                masked.add(server)
            if asyncio.get_running_loop().time() > next_switch:
                plan = 3 - plan
                await store.set_plan(1, snapshot(PLANS[plan], plan_id=plan, ttl_s=TTL_S))
                next_switch += rng.uniform(0.6, 1.4)

    async def sampler() -> None:
        while not stop.is_set():
            st = await store.state(1)
            raw = st["_raw"]
            try:
                check_instant(raw)
                state_of = {s["server"]: s["state"] for s in st["servers"]}
                for c in st["chains"]:
                    hops = [s for s in PLANS[st["plan"]][c["chain"]][0]]
                    want = any(state_of.get(s, "up") in MASKING_STATES for s in hops)
                    assert c["masked"] == want, (c, {s: state_of.get(s) for s in hops})
                    counts["masked_seen"] += c["masked"]
            except AssertionError as exc:
                errors.append(str(exc))
            counts["samples"] += 1
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(client(i)) for i in range(20)]
    tasks += [asyncio.create_task(chaos()), asyncio.create_task(sampler())]
    await asyncio.sleep(SECONDS)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for server in SERVERS:
        await store.set_server_state(1, server, "up")
    await asyncio.sleep(TTL_S + 0.3)                    # the killed clients' leases expire
    await store.sweep(1)
    final = await store.state(1)
    events = await store.events(1, limit=10000)
    return {"grants": grants, "errors": errors, "counts": counts, "final": final, "events": events}


def masked_grants(grants, events) -> tuple[list, int]:
    """Grants made while a server of their chain was in a masking state (by the store's clock, ms), and how
    many grants could be checked.  Within one millisecond only the order is unknown: a grant in the ms of an
    unmask is fine, and one in the ms where its server became masked (from up) cannot be told apart."""
    timeline: dict[str, list[tuple[int, str]]] = {}
    for e in events:
        timeline.setdefault(e["server"], []).append((ms(e["at"]), e["state"]))
    bad, checked = [], 0
    for g, plan, chain, hops in grants:
        ambiguous = False
        for s in hops:
            line = timeline.get(s, [])
            before = [st for at, st in line if at < g]
            masked_before = bool(before) and before[-1] in MASKING_STATES
            during = [st for at, st in line if at == g]
            if masked_before and all(st in MASKING_STATES for st in during):
                bad.append((g, plan, chain, s, before[-1], during))
            elif not masked_before and any(st in MASKING_STATES for st in during):
                ambiguous = True
        checked += not ambiguous
    return bad, checked


def test_churn_keeps_every_invariant(store_factory):
    store = store_factory(liveness=LivenessConfig(suspect_s=0.2, suspect_max_s=1.0,
                                                  heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S))
    out = run(churn(store, seed=22))
    counts, final = out["counts"], out["final"]
    assert not out["errors"], out["errors"][:5]
    assert counts["samples"] > 100 and counts["masked_seen"] > 50, counts
    assert counts["killed"] >= 5 and counts["reported"] >= 10 and counts["server_down"] >= 1, counts
    bad, checked = masked_grants(out["grants"], out["events"])
    assert not bad, bad[:5]
    assert checked >= 0.9 * len(out["grants"]) and len(out["grants"]) > 150, (checked, len(out["grants"]))
    causes = {e["cause"] for e in out["events"]}
    assert {"stress", "failure report: stress"} <= causes and "heartbeat timeout" in causes, causes
    # nothing left behind: every grant ended by a release, an expiry or a revocation
    obs = final["observations"]
    assert final["queue_length"] == 0 and all(c["in_progress"] == 0 for c in final["chains"])
    assert obs["grants"] == len(out["grants"]) == obs["releases"] + obs["expiries"] + obs["revoked"], obs
    assert obs["expiries"] >= counts["killed"] and obs["revoked"] == counts["server_down"]
