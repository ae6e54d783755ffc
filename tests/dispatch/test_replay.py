"""The live dispatcher makes the simulator's choices: replay one arrival/completion sequence through both.

The reference is solvers.dispatch (the classes the discrete-event simulator
uses), driven by an event loop with exponential service times; the same events,
in the same order, go through the store's scripts (the code the HTTP service
runs).  Every job must start on the same chain, and waiting jobs must start in
the same order.

With masks: a chain masked all along makes the simulator's choices for the plan without that
chain (capacity 0); and masks that come and go during the replay (owners' settings and failure
reports) make both stores take the same choices, none of them on a masked chain.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from solvers.dispatch import DISPATCHERS, _Uniforms

from .conftest import run, snapshot

CHAINS = [(["a", "b"], [3, 3], 2.0, 3), (["c"], [6], 1.0, 2), (["d", "e"], [2, 4], 3.0, 4),
          (["f"], [6], 1.0, 1)]      # chain 3 ties chain 1 on speed: ties go to the lower index


def reference(policy: str, n: int, seed: int, chains=CHAINS):
    rng = np.random.default_rng(seed)
    times = [t for _, _, t, _ in chains]
    caps = [c for _, _, _, c in chains]
    kw = {"rng": np.random.default_rng(seed + 1)} if policy == "random" else {}
    d = DISPATCHERS[policy](times, caps, **kw)
    total_rate = sum(c / t for t, c in zip(times, caps))
    arrivals = np.cumsum(rng.exponential(1 / (0.95 * total_rate), n))
    sizes = rng.exponential(1.0, n)
    events = [(float(a), 0, j) for j, a in enumerate(arrivals)]
    heapq.heapify(events)
    chain, log = {}, []
    while events:
        t, kind, j = heapq.heappop(events)
        if kind == 0:
            log.append(("arrive", j))
            k = d.arrive(j)
            if k is not None:
                chain[j] = k
                heapq.heappush(events, (t + sizes[j] * times[k], 1, j))
        else:
            log.append(("complete", j))
            nxt = d.complete(chain[j])
            if nxt is not None:
                chain[nxt] = chain[j]
                heapq.heappush(events, (t + sizes[nxt] * times[chain[j]], 1, nxt))
    return log, chain


async def replay(store, policy: str, log, seed: int, down: tuple[str, ...] = ()):
    uniforms = _Uniforms(np.random.default_rng(seed + 1))
    await store.set_plan(1, snapshot(CHAINS, policy=policy, ttl_s=600))
    for server in down:
        await store.set_server_state(1, server, "down")
    lease_of, chain, pending, started = {}, {}, {}, []
    for kind, j in log:
        if kind == "arrive":
            u = uniforms() if policy == "random" else 0.0
            lid, d = await store.enqueue(1, policy=policy, wait_s=300, uniform=u)
            if "lease" in d:
                lease_of[j], chain[j] = d["lease"], d["chain"]
            else:
                assert d["queued"], d
                pending[j] = lid
        else:
            assert await store.release(1, lease_of[j])
            for w, lid in list(pending.items()):
                got = await store.granted(1, lid)
                if got is not None:
                    lease_of[w], chain[w] = got["lease"], got["chain"]
                    started.append(w)
                    del pending[w]
    assert not pending
    st = await store.state(1)
    assert st["observations"]["grants"] == st["observations"]["releases"] == len(chain)
    return chain, started


@pytest.mark.parametrize("policy", ["jffc", "jsq", "sed", "random"])
def test_live_choices_equal_the_simulators(store_factory, policy):
    log, expected = reference(policy, n=300, seed=7)
    got, _ = run(replay(store_factory(), policy, log, seed=7))
    assert len(got) == 300
    assert got == expected


def test_replay_exercises_waiting_and_all_chains():
    """The sequence must make jobs wait and use every chain, or the comparison would say little."""
    log, expected = reference("jffc", n=300, seed=7)
    assert set(expected.values()) == {0, 1, 2, 3}
    # some job arrived when every chain was full (it started on a completion)
    waited = 0
    from solvers.dispatch import JFFC
    d = JFFC([t for _, _, t, _ in CHAINS], [c for _, _, _, c in CHAINS])
    for kind, j in log:
        if kind == "arrive" and d.arrive(j) is None:
            waited += 1
        elif kind == "complete":
            d.complete(expected[j])
    assert waited >= 20


@pytest.mark.parametrize("policy", ["jffc", "jsq", "sed", "random"])
def test_a_chain_masked_all_along_is_a_chain_the_plan_does_not_have(store_factory, policy):
    """Server c down: chain 1 gets nothing, and the rest is the simulator's plan with c_1 = 0."""
    without = [ch if k != 1 else (*ch[:3], 0) for k, ch in enumerate(CHAINS)]
    log, expected = reference(policy, n=300, seed=3, chains=without)
    assert set(expected.values()) == {0, 2, 3}
    got, _ = run(replay(store_factory(), policy, log, seed=3, down=("c",)))
    assert got == expected


# mask changes during the replay, at these arrivals: (server, state) by set_server_state, or a failure
# report ("fail", server) with the next completion whose chain passes through the server
TOGGLES = {20: ("d", "draining"), 45: ("fail", "a"), 46: ("fail", "a"), 75: ("d", "up"), 100: ("f", "joining"),
           130: ("a", "up"), 150: ("c", "down"), 170: ("f", "up"), 200: ("c", "up"), 220: ("fail", "f"),
           240: ("f", "up")}


async def replay_with_masks(store, policy: str, log, seed: int):
    """The log's arrivals and completions with TOGGLES applied; a completion of a job still waiting (masks delay
    jobs the simulator started) happens as soon as it starts.  Returns every job's chain, the start order, the
    events and the final state, and checks that no grant ever lands on a masked chain."""
    uniforms = _Uniforms(np.random.default_rng(seed + 1))
    await store.set_plan(1, snapshot(CHAINS, policy=policy, ttl_s=600))
    hops = [set(servers) for servers, _, _, _ in CHAINS]
    lease_of, chain, pending, started, done_early, report = {}, {}, {}, [], set(), []
    arrivals = 0

    async def masked_now():
        return {c["chain"] for c in (await store.state(1))["chains"] if c["masked"]}

    async def collect(masked):
        # the grants the last operation made, checked against the masks it left (called after every one)
        now_started = []
        for w, lid in list(pending.items()):
            got = await store.granted(1, lid)
            if got is not None:
                assert got["chain"] not in masked, (w, got["chain"], masked)
                lease_of[w], chain[w] = got["lease"], got["chain"]
                started.append(w)
                now_started.append(w)
                del pending[w]
        for w in now_started:
            if w in done_early:
                await finish(w)

    async def finish(j):
        failed = None
        if report and report[0] in hops[chain[j]]:
            failed = {"server": report.pop(0), "error": "replayed failure"}
        if failed is None:
            assert await store.release(1, lease_of[j])
        else:
            assert (await store.release(1, lease_of[j], failed=failed))["released"]
        await collect(await masked_now())

    for kind, j in log:
        if kind == "arrive":
            toggle = TOGGLES.get(arrivals)
            arrivals += 1
            if toggle and toggle[0] == "fail":
                report.append(toggle[1])
            elif toggle:
                await store.set_server_state(1, toggle[0], toggle[1])
                await collect(await masked_now())
            masked = await masked_now()
            u = uniforms() if policy == "random" else 0.0
            lid, d = await store.enqueue(1, policy=policy, wait_s=300, uniform=u)
            if "lease" in d:
                assert d["chain"] not in masked
                lease_of[j], chain[j] = d["lease"], d["chain"]
            else:
                assert d["queued"], d
                pending[j] = lid
        elif j in lease_of:
            await finish(j)
        else:
            done_early.add(j)
    for server in ("a", "c", "d", "f"):
        await store.set_server_state(1, server, "up")
        await collect(set())
    assert not pending
    st = await store.state(1)
    events = [(e["id"], e["server"], e["prev"], e["state"], e["cause"]) for e in await store.events(1)]
    return chain, started, events, [(c["chain"], c["in_progress"], c["masked"]) for c in st["chains"]], st["servers"]


@pytest.mark.parametrize("backend", ["redis", "cluster"])
@pytest.mark.parametrize("policy", ["jffc", "jsq", "sed", "random"])
def test_both_stores_make_the_same_choices_while_masks_come_and_go(policy, prefix, backend):
    from serving.dispatch.liveness import LivenessConfig
    from serving.dispatch.memory_store import MemoryStore
    from serving.dispatch.redis_store import AsyncRedisStore, RedisStore

    from .conftest import backend_url
    REDIS_URL = backend_url(backend)
    cfg = LivenessConfig(suspect_s=600, suspect_max_s=600, heartbeat_timeout_s=600)   # no change by time
    log, _ = reference(policy, n=300, seed=5)
    memory = run(replay_with_masks(MemoryStore(liveness=cfg), policy, log, seed=5))
    try:
        redis = run(replay_with_masks(AsyncRedisStore(REDIS_URL, prefix=prefix, liveness=cfg), policy, log, seed=5))
    finally:
        RedisStore(REDIS_URL, prefix=prefix).clear()
    chain, started, events, final, _ = memory
    assert len(chain) == 300
    assert memory[:4] == redis[:4]
    assert [s["state"] for s in memory[4]] == [s["state"] for s in redis[4]]
    # the toggles did something: masks, a failure report's suspect and a second one's down, waits
    assert ("d", "up", "draining") in [e[1:4] for e in events] and ("a", "suspect", "down") in [e[1:4] for e in events]
    assert any(e[4] == "failure report: replayed failure" for e in events)
    assert len(started) >= 20
