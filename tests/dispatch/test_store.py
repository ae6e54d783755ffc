"""Semantics of the dispatcher, the same on both stores (MemoryStore and Redis)."""

from __future__ import annotations

import asyncio

import pytest

from serving.dispatch.protocol import NoAdoptedPlan, NoFreeChain

from .conftest import TWO, run, snapshot


def test_grants_fastest_free_chain_then_queues_fifo(store_factory):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot(TWO))
        leases = [await s.acquire(1, wait_s=0) for _ in range(5)]
        assert [l["chain"] for l in leases] == [0, 0, 1, 1, 1]
        assert leases[0]["servers"] == [{"server": "a", "start_block": 0, "num_blocks": 2},
                                        {"server": "b", "start_block": 2, "num_blocks": 3}]
        with pytest.raises(NoFreeChain):
            await s.acquire(1, wait_s=0)
        # three waiters, queued in order; each release hands the freed slot to the oldest
        waiters = []
        for i in range(3):
            waiters.append(asyncio.create_task(s.acquire(1, wait_s=10)))
            await asyncio.sleep(0.05)
        st = await s.state(1)
        assert st["queue_length"] == 3
        order = []
        for i, lease in enumerate([leases[2], leases[0], leases[3]]):
            assert await s.release(1, lease["lease"])
            got = await asyncio.wait_for(waiters[i], 5)
            order.append((i, got["chain"]))
            assert got["waited_s"] > 0
        assert order == [(0, 1), (1, 0), (2, 1)]
        st = await s.state(1)
        assert st["queue_length"] == 0
        assert [c["in_progress"] for c in st["chains"]] == [2, 3]
        obs = st["observations"]
        assert obs["grants"] == 8 and obs["releases"] == 3 and obs["expiries"] == 0
    run(body())


def test_release_is_idempotent_and_renew_after_release_is_gone(store_factory):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot(TWO))
        lease = await s.acquire(1, wait_s=0)
        renewed = await s.renew(1, lease["lease"])
        assert renewed["ttl_s"] == 30.0 and renewed["expires_at"] >= lease["expires_at"]
        assert await s.release(1, lease["lease"]) is True
        assert await s.release(1, lease["lease"]) is False
        assert await s.renew(1, lease["lease"]) is None
        assert await s.release(1, "no-such-lease") is False
        st = await s.state(1)
        assert st["observations"]["releases"] == 1
        assert [c["in_progress"] for c in st["chains"]] == [0, 0]
    run(body())


def test_unrenewed_lease_expires_and_its_slot_goes_to_the_queue_head(store_factory):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot([(["a"], [4], 1.0, 1)], ttl_s=0.3))
        held = await s.acquire(1, wait_s=0)
        waiter = asyncio.create_task(s.acquire(1, wait_s=5))
        got = await asyncio.wait_for(waiter, 5)
        assert 0.2 <= got["waited_s"] <= 2.0
        assert await s.release(1, held["lease"]) is False     # expired: changes nothing
        st = await s.state(1)
        assert st["observations"]["expiries"] == 1
        assert st["chains"][0]["in_progress"] == 1
    run(body())


def test_no_plan_and_withdrawn_plan(store_factory):
    async def body():
        s = store_factory()
        with pytest.raises(NoAdoptedPlan, match="no adopted plan"):
            await s.acquire(5, wait_s=0)
        await s.set_plan(5, snapshot(TWO))
        lease = await s.acquire(5, wait_s=0)
        await s.set_plan(5, None)
        with pytest.raises(NoAdoptedPlan):
            await s.acquire(5, wait_s=0)
        assert await s.release(5, lease["lease"]) is True     # in-flight work still ends cleanly
    run(body())


@pytest.mark.parametrize("bad", [-1, 301, float("nan"), "5", True])
def test_absurd_waits_are_refused(store_factory, bad):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot(TWO))
        with pytest.raises(ValueError, match="wait_s"):
            await s.acquire(1, wait_s=bad)
    run(body())


def test_waiter_times_out_and_leaves_the_queue(store_factory):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot([(["a"], [4], 1.0, 1)]))
        held = await s.acquire(1, wait_s=0)
        with pytest.raises(NoFreeChain, match="within 0.2 s"):
            await s.acquire(1, wait_s=0.2)
        st = await s.state(1)
        assert st["queue_length"] == 0 and st["observations"]["timeouts"] == 1
        await s.release(1, held["lease"])
        assert (await s.state(1))["chains"][0]["in_progress"] == 0    # the slot was not handed to a ghost
    run(body())


def test_plan_switch_never_overcommits_a_server(store_factory):
    """Old jobs finish on old chains; new chains respect every server's slots under both plans."""
    async def body():
        s = store_factory()
        # plan 1: server b holds 2 jobs x 3 blocks = 6 block-slots on chain 0
        await s.set_plan(1, snapshot([(["a", "b"], [2, 3], 1.0, 2)], plan_id=1))
        old = [await s.acquire(1, wait_s=0) for _ in range(2)]
        # plan 2: b alone runs 5 blocks with 2 slots (10 block-slots); c runs 5 blocks with 1 slot
        await s.set_plan(1, snapshot([(["b"], [5], 0.5, 2), (["c"], [5], 0.9, 1)], plan_id=2))
        st = await s.state(1)
        assert st["plan"] == 2
        # b: 6 used of min(6, 10) -> chain 0 of the new plan must wait; c is free
        first = await s.acquire(1, wait_s=0)
        assert first["chain"] == 1
        with pytest.raises(NoFreeChain):
            await s.acquire(1, wait_s=0)
        await s.release(1, old[0]["lease"])       # b: 3 used, limit still 6 (old plan in flight): 3 + 5 > 6
        with pytest.raises(NoFreeChain):
            await s.acquire(1, wait_s=0)
        await s.release(1, old[1]["lease"])       # old plan drained: b's limit is 10
        a, b = await s.acquire(1, wait_s=0), await s.acquire(1, wait_s=0)
        assert (a["chain"], b["chain"]) == (0, 0)
        st = await s.state(1)
        servers = {x["server"]: x for x in st["observations"]["servers"]}
        assert servers["b"]["used_slots"] == 10 and servers["b"]["slot_limit"] == 10
        assert st["observations"]["in_flight_by_plan"] == [{"plan": 2, "generation": 2, "in_flight": 3}]
    run(body())


def test_same_plan_again_changes_nothing(store_factory):
    async def body():
        s = store_factory()
        g1 = await s.set_plan(1, snapshot(TWO))
        lease = await s.acquire(1, wait_s=0)
        assert await s.set_plan(1, snapshot(TWO)) == g1
        st = await s.state(1)
        assert st["chains"][lease["chain"]]["in_progress"] == 1
    run(body())


def test_arrival_rate_and_measured_service_time(store_factory):
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot(TWO))
        assert (await s.state(1))["arrival_rate"] is None
        for _ in range(4):
            lease = await s.acquire(1, wait_s=0)
            await asyncio.sleep(0.05)
            await s.release(1, lease["lease"])
        st = await s.state(1)
        assert st["arrival_rate"] == pytest.approx(4.0)     # 4 arrivals within the first second
        measured = st["observations"]["chains"][0]["measured_service_time_s"]
        assert 0.04 <= measured <= 1.0
        assert st["observations"]["chains"][0]["completed"] == 4
    run(body())


def test_calls_issued_together_keep_every_semantic(store_factory):
    """Many calls in one event-loop turn (on Redis: one batched script call) act as the same calls one by one."""
    async def body():
        s = store_factory()
        await s.set_plan(1, snapshot(TWO))
        got = await asyncio.gather(*(s.acquire(1, wait_s=0) for _ in range(12)), return_exceptions=True)
        leases = [g for g in got if isinstance(g, dict)]
        assert sorted(l["chain"] for l in leases) == [0, 0, 1, 1, 1]
        assert sum(isinstance(g, NoFreeChain) for g in got) == 7
        assert len({l["lease"] for l in leases}) == 5
        st = await s.state(1)
        assert [c["in_progress"] for c in st["chains"]] == [2, 3]
        first = leases[0]["lease"]
        # a release and its repeat in the same turn: the first frees the slot, the repeat changes nothing
        released = await asyncio.gather(s.release(1, first), s.release(1, first),
                                        *(s.release(1, l["lease"]) for l in leases[1:]), s.renew(1, first))
        assert released[:2] == [True, False] and all(released[2:6]) and released[6] is None
        st = await s.state(1)
        assert [c["in_progress"] for c in st["chains"]] == [0, 0]
        obs = st["observations"]
        assert (obs["arrivals"], obs["grants"], obs["releases"], obs["expiries"]) == (12, 5, 5, 0)
        assert sum(obs["wait_histogram_ms"]["counts"].values()) == 5
    run(body())


def test_batch_operation_of_the_script(prefix):
    """The script's batch operation answers each operation in order, as separate calls would."""
    from .conftest import REDIS_URL, require_redis
    from serving.dispatch.redis_store import RedisStore
    require_redis()
    s = RedisStore(REDIS_URL, prefix=prefix)
    try:
        s.set_plan(1, snapshot([(["a"], [4], 1.0, 1), (["b"], [4], 2.0, 1)]))
        key = s.cluster(1)
        out = s._script(keys=[key], args=["batch", "acquire", "L1", "", "0.5", 0, "acquire", "L2", "", "0.5", 0,
                                          "acquire", "L3", "", "0.5", 0, "acquire", "L1", "", "0.5", 0,
                                          "renew", "L2", "release", "L1", "release", "L1", "renew", "L1",
                                          "acquire", "L4", "", "0.5", 0])
        import json
        a1, a2, a3, again, renewed, r1, r1b, gone, a4 = out
        assert json.loads(a1)["chain"] == 0 and json.loads(a2)["chain"] == 1
        assert json.loads(a3) == {"queued": False, "position": 1}
        assert json.loads(again) == json.loads(a1)          # a retried acquire gets the first answer
        assert "ttl_ms" in json.loads(renewed)
        assert (r1, r1b) == (1, 0)
        assert json.loads(gone) == {"gone": True}
        assert json.loads(a4)["chain"] == 0                 # L1's slot, freed earlier in the batch
        st = s.state(1)["observations"]
        assert (st["arrivals"], st["grants"], st["releases"]) == (4, 3, 1)
        # a lease record of the previous script version (JSON), already expired: dropped, never an error
        s.redis.hset(key + "lease", "OLD", '{"g":1,"k":0,"t0":1,"dl":2,"w":0}')
        s.redis.zadd(key + "dl", {"OLD": 2})
        assert json.loads(s._script(keys=[key], args=["renew", "OLD"])) == {"gone": True}
        s.redis.hset(key + "lease", "OLD2", '{"g":1,"k":0,"t0":1,"dl":2,"w":0}')
        s.redis.zadd(key + "dl", {"OLD2": 2})
        assert s.release(1, "OLD2") is False
        assert s.state(1)["observations"]["expiries"] == 0
        try:
            s._script(keys=[key], args=["batch", "acquire", "L5", "", "0.5", 0, "bogus", "x"])
            raise AssertionError("an unknown batched operation must be refused")
        except Exception as exc:  # noqa: BLE001
            assert "unknown batched operation" in str(exc)
    finally:
        s.clear()
