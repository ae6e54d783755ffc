"""Server liveness and chain masking, the same on both stores (MemoryStore and the Lua script on Redis)."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.dispatch.liveness import LivenessConfig
from serving.dispatch.protocol import InvalidRequest, LeaseGone, NoFreeChain, ServerDown

from .conftest import run, snapshot

# three chains, fastest first; server "a" is only on chain 0, "c" only on chain 1, "d" only on chain 2
THREE = [(["a", "b"], [2, 2], 1.0, 1), (["c"], [4], 2.0, 1), (["d"], [4], 3.0, 1)]
SLOW = LivenessConfig(suspect_s=30, suspect_max_s=60, heartbeat_timeout_s=30)     # nothing changes by time


def chains(st):
    return [(c["in_progress"], c["masked"]) for c in st["chains"]]


def states(st):
    return {s["server"]: s["state"] for s in st["servers"]}


async def waiter(s, wait_s=10.0):
    task = asyncio.create_task(s.acquire(1, wait_s=wait_s))
    await asyncio.sleep(0.05)          # queued in this order
    return task


def test_a_masked_chain_gets_no_grant_waiters_go_elsewhere_in_order_and_get_it_back_at_once(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        got = await s.set_server_state(1, "a", "down")
        assert got["server"] == "a" and got["state"] == "down" and got["since"].endswith("Z")
        st = await s.state(1)
        assert chains(st) == [(0, True), (0, False), (0, False)]
        assert st["servers"][0] == {"server": "a", "state": "down", "since": got["since"]}
        assert states(st) == {"a": "down", "b": "up", "c": "up", "d": "up"}
        l1, l2 = await s.acquire(1, wait_s=0), await s.acquire(1, wait_s=0)
        assert (l1["chain"], l2["chain"]) == (1, 2)           # chain 0 is the fastest and free, but masked
        with pytest.raises(NoFreeChain):
            await s.acquire(1, wait_s=0)
        w1, w2, w3 = await waiter(s), await waiter(s), await waiter(s)
        assert (await s.state(1))["queue_length"] == 3
        await s.release(1, l1["lease"])
        first = await asyncio.wait_for(w1, 5)
        assert first["chain"] == 1 and not w2.done()
        # back up: the head of the queue gets the unmasked chain in the same step
        await s.set_server_state(1, "a", "up")
        assert (await asyncio.wait_for(w2, 0.2))["chain"] == 0 and not w3.done()
        await s.release(1, l2["lease"])
        assert (await asyncio.wait_for(w3, 5))["chain"] == 2
        st = await s.state(1)
        assert chains(st) == [(1, False), (1, False), (1, False)] and st["queue_length"] == 0
        ev = await s.events(1)
        assert [(e["id"], e["server"], e["prev"], e["state"], e["cause"]) for e in ev] == [
            (1, "a", "up", "down", "set by owner"), (2, "a", "down", "up", "set by owner")]
    run(body())


def test_a_masked_chain_keeps_its_jobs_and_its_freed_slot_stays_out(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE[:2]))
        l0, l1 = await s.acquire(1, wait_s=0), await s.acquire(1, wait_s=0)
        w = await waiter(s)
        await s.set_server_state(1, "b", "draining", cause="maintenance")
        st = await s.state(1)
        assert chains(st) == [(1, True), (1, False)]       # the job in flight stays; no eviction
        assert await s.renew(1, l0["lease"]) is not None      # draining is no reason to end a lease
        assert await s.release(1, l0["lease"]) is True
        await asyncio.sleep(0.3)
        assert not w.done()                                   # its slot does not go back to the masked chain
        assert chains(await s.state(1)) == [(0, True), (1, False)]
        await s.release(1, l1["lease"])
        assert (await asyncio.wait_for(w, 5))["chain"] == 1
        assert (await s.events(1))[0]["cause"] == "maintenance"
    run(body())


def test_a_failure_report_makes_the_server_suspect_masked_at_once_then_up_after_its_probation(store_factory):
    async def body():
        s = store_factory(liveness=LivenessConfig(suspect_s=0.6, suspect_max_s=10, heartbeat_timeout_s=30))
        await s.set_plan(1, snapshot(THREE))
        lease = await s.acquire(1, wait_s=0)
        assert lease["chain"] == 0
        got = await s.release(1, lease["lease"], failed={"server": "b", "error": "connection reset"})
        assert got == {"released": True, "server": "b", "server_state": "suspect"}
        st = await s.state(1)
        assert chains(st) == [(0, True), (0, False), (0, False)] and states(st)["b"] == "suspect"
        obs = st["observations"]
        assert (obs["releases"], obs["failures"], obs["chains"][0]["completed"]) == (1, 1, 0)
        other = await s.acquire(1, wait_s=0)
        assert other["chain"] == 1
        await s.release(1, other["lease"])
        await asyncio.sleep(0.9)
        assert (await s.sweep(1)) == 0
        st = await s.state(1)
        assert chains(st) == [(0, False), (0, False), (0, False)] and states(st)["b"] == "up"
        assert (await s.acquire(1, wait_s=0))["chain"] == 0
        ev = await s.events(1)
        assert [(e["server"], e["prev"], e["state"], e["cause"]) for e in ev] == [
            ("b", "up", "suspect", "failure report: connection reset"), ("b", "suspect", "up", "suspect period over")]
        assert ev[0]["id"] < ev[1]["id"] and ev[0]["at"] < ev[1]["at"]
        row = {r["server"]: r for r in await s.server_states(1)}["b"]
        assert (row["failures"], row["last_error"], row["heard_at"], row["info"]) == (1, "connection reset", None, None)
    run(body())


def test_a_second_report_from_another_lease_is_down_and_a_renew_through_it_is_410(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot([(["a", "b"], [2, 2], 1.0, 3), (["c"], [4], 2.0, 1)]))
        l1, l2, l3 = [await s.acquire(1, wait_s=0) for _ in range(3)]
        assert {l1["chain"], l2["chain"], l3["chain"]} == {0}
        assert (await s.release(1, l1["lease"], failed={"server": "a", "error": "x"}))["server_state"] == "suspect"
        # the same lease again is no new evidence (and is released already)
        again = await s.release(1, l1["lease"], failed={"server": "a", "error": "x"})
        assert again == {"released": False, "server": "a", "server_state": "suspect"}
        assert (await s.release(1, l2["lease"], failed={"server": "a"}))["server_state"] == "down"
        with pytest.raises(ServerDown) as exc:
            await s.renew(1, l3["lease"])
        assert isinstance(exc.value, LeaseGone) and exc.value.status == 410 and exc.value.server == "a"
        assert exc.value.body == {"detail": exc.value.detail, "server": "a"} and "'a'" in exc.value.detail
        st = await s.state(1)
        assert chains(st) == [(0, True), (0, False)]           # the revoked lease's slot is free
        assert st["observations"]["revoked"] == 1
        assert await s.release(1, l3["lease"]) is False
        assert await s.renew(1, l3["lease"]) is None         # now simply gone
        assert [e["state"] for e in await s.events(1)] == ["suspect", "down"]
    run(body())


def test_a_report_must_name_a_server_of_the_leases_chain(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        lease = await s.acquire(1, wait_s=0)
        with pytest.raises(InvalidRequest, match=r"server 'c' is not on lease .*'s chain \(its servers: 'a', 'b'\)"):
            await s.release(1, lease["lease"], failed={"server": "c", "error": "?"})
        for bad, words in (({"server": "a", "why": 1}, "unknown key(s) 'why'"), ({"error": "x"}, "needs 'server'"),
                           ({"server": ""}, "non-empty"), ({"server": "a", "error": 3}, "must be a string"),
                           ("a", "must be an object"), ({"server": "a" * 201}, "at most 200")):
            with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
                await s.release(1, lease["lease"], failed=bad)
        st = await s.state(1)
        assert chains(st)[0] == (1, False) and states(st)["c"] == "up"      # nothing released, nothing recorded
        assert await s.release(1, lease["lease"]) is True
    run(body())


def test_silence_after_heartbeats_is_down_and_a_heartbeat_brings_it_back(store_factory):
    async def body():
        s = store_factory(liveness=LivenessConfig(suspect_s=1, suspect_max_s=60, heartbeat_timeout_s=0.5))
        await s.set_plan(1, snapshot(THREE))
        got = await s.heartbeat(1, "c", info={"free_gib": 12.5})
        assert got == {"server": "c", "state": "up", "since": None}
        held = await s.acquire(1, wait_s=0)
        lease = await s.acquire(1, wait_s=0)
        assert (held["chain"], lease["chain"]) == (0, 1)
        await asyncio.sleep(0.4)
        await s.heartbeat(1, "c")
        await asyncio.sleep(0.4)
        assert states(await s.state(1))["c"] == "up"            # heard 0.4 s ago: fine
        await asyncio.sleep(0.5)
        await s.sweep(1)
        st = await s.state(1)
        assert states(st)["c"] == "down" and chains(st)[1] == (1, True)
        with pytest.raises(ServerDown, match="'c'"):
            await s.renew(1, lease["lease"])
        assert (await s.heartbeat(1, "c"))["state"] == "up"
        assert chains(await s.state(1))[1] == (0, False)
        ev = await s.events(1)
        assert [(e["state"], e["cause"]) for e in ev] == [("down", "heartbeat timeout"), ("up", "heartbeat")]
        row = {r["server"]: r for r in await s.server_states(1)}["c"]
        assert row["info"] == {"free_gib": 12.5} and row["heard_at"] is not None
    run(body())


def test_heartbeats_drain_and_join_and_never_shorten_a_probation(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        assert (await s.set_server_state(1, "d", "joining"))["state"] == "joining"
        assert chains(await s.state(1))[2] == (0, True)
        assert (await s.heartbeat(1, "d"))["state"] == "up"
        assert (await s.set_server_state(1, "d", "down"))["state"] == "down"
        assert (await s.heartbeat(1, "d"))["state"] == "up"
        assert (await s.heartbeat(1, "d", state="draining"))["state"] == "draining"
        assert chains(await s.state(1))[2] == (0, True)
        assert (await s.heartbeat(1, "d"))["state"] == "up"           # the server's own drain is over
        await s.set_server_state(1, "d", "draining")
        assert (await s.heartbeat(1, "d"))["state"] == "draining"     # the owner's drain stands
        await s.set_server_state(1, "d", "up")
        lease = await s.acquire(1, wait_s=0)
        await s.release(1, lease["lease"], failed={"server": "a", "error": "boom"})
        assert (await s.heartbeat(1, "a"))["state"] == "suspect"      # its probation is 30 s
        assert [e["cause"] for e in await s.events(1)] == [
            "set by owner", "heartbeat", "set by owner", "heartbeat", "heartbeat: draining", "heartbeat",
            "set by owner", "set by owner", "failure report: boom"]
    run(body())


def test_states_and_arguments_are_checked_and_a_server_outside_the_plan_is_masked_when_it_joins(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        with pytest.raises(InvalidRequest, match="invalid server state 'dead'; choose one of up, suspect, down"):
            await s.set_server_state(1, "a", "dead")
        with pytest.raises(InvalidRequest, match="invalid server state 'down'; choose one of up, draining"):
            await s.heartbeat(1, "a", state="down")
        with pytest.raises(InvalidRequest, match="non-empty string"):
            await s.set_server_state(1, "", "up")
        with pytest.raises(InvalidRequest, match="info must be a JSON object"):
            await s.heartbeat(1, "a", info=[1])
        with pytest.raises(InvalidRequest, match="at most 4096 bytes"):
            await s.heartbeat(1, "a", info={"x": "y" * 5000})
        for bad in ({"after": -1}, {"limit": 0}, {"limit": 10001}, {"after": "3"}, {"after": 2 ** 70}):
            with pytest.raises(InvalidRequest):
                await s.events(1, **bad)
        # no plan yet: a server may be set (it may join later) and the plan adopted then is masked by it
        assert (await s.set_server_state(1, "e", "joining"))["state"] == "joining"
        assert [r["server"] for r in await s.server_states(1)] == ["e"]
        await s.set_plan(1, snapshot([(["e"], [4], 0.5, 1)] + THREE))
        st = await s.state(1)
        assert chains(st) == [(0, True), (0, False), (0, False), (0, False)]
        assert (await s.acquire(1, wait_s=0))["chain"] == 1
        await s.heartbeat(1, "e")
        assert (await s.acquire(1, wait_s=0))["chain"] == 0
        # a plan switch: the new generation is masked by the states at once; old leases end normally
        await s.set_server_state(1, "c", "down")
        await s.set_plan(1, snapshot([(["c"], [4], 0.1, 2), (["d"], [4], 0.2, 1)], plan_id=2))
        assert chains(await s.state(1)) == [(0, True), (0, False)]
        assert (await s.acquire(1, wait_s=0))["chain"] == 1
        ev = await s.events(1, after=1, limit=2)
        assert [e["id"] for e in ev] == [2, 3] and [e["id"] for e in await s.events(1, after=3)] == []
        assert await s.events(1, after=2 ** 53) == []
    run(body())


def test_committed_waiters_of_a_masked_chain_move_to_the_central_queue_in_arrival_order(store_factory):
    """JSQ commits waiters to chains: a mask hands them to the other chains, earliest first."""
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot([(["a"], [4], 1.0, 1), (["c"], [4], 2.0, 1)], policy="jsq"))
        l0, l1 = await s.acquire(1, wait_s=0), await s.acquire(1, wait_s=0)
        assert (l0["chain"], l1["chain"]) == (0, 1)
        w1, w2, w3 = await waiter(s), await waiter(s), await waiter(s)     # committed to chains 0, 1, 0
        st = await s.state(1)
        assert [c["waiting"] for c in st["observations"]["chains"]] == [2, 1]
        await s.set_server_state(1, "a", "down")
        st = await s.state(1)
        assert [c["waiting"] for c in st["observations"]["chains"]] == [0, 1] and st["queue_length"] == 3
        order = []
        lease = l1
        for _ in range(3):
            await s.release(1, lease["lease"])
            await asyncio.sleep(0.05)
            done = [w for w in (w1, w2, w3) if w.done() and w not in order]
            assert len(done) == 1 and done[0].result()["chain"] == 1
            order.append(done[0])
            lease = done[0].result()
        assert order == [w1, w2, w3]
        # new arrivals choose among the unmasked chains only (and wait when every chain is masked)
        await s.release(1, lease["lease"])
        for policy in ("jsq", "sed", "random", "jffc"):
            got = await s.acquire(1, wait_s=0, policy=policy, uniform=0.01)
            assert got["chain"] == 1, policy
            await s.release(1, got["lease"])
        await s.set_server_state(1, "c", "draining")
        pending = asyncio.create_task(s.acquire(1, wait_s=5, policy="random", uniform=0.5))
        await asyncio.sleep(0.1)
        assert not pending.done() and (await s.state(1))["queue_length"] == 1
        await s.set_server_state(1, "c", "up")
        assert (await asyncio.wait_for(pending, 5))["chain"] == 1
        assert await s.release(1, l0["lease"]) is True
    run(body())


def test_a_successful_release_ends_the_failure_streak(store_factory):
    async def body():
        s = store_factory(liveness=LivenessConfig(suspect_s=0.5, suspect_max_s=60, heartbeat_timeout_s=30))
        await s.set_plan(1, snapshot([(["a"], [4], 1.0, 2), (["c"], [4], 2.0, 1)]))

        async def failed_episode():
            lease = await s.acquire(1, wait_s=0, policy="jsq", uniform=0.0)
            assert lease["chain"] == 0
            await s.release(1, lease["lease"], failed={"server": "a", "error": "e"})
            return time.monotonic()

        t0 = await failed_episode()                    # episode 1: 0.5 s
        await asyncio.sleep(0.8)
        assert states(await s.state(1))["a"] == "up"
        t1 = await failed_episode()                    # episode 2, no success in between: 1.0 s
        await asyncio.sleep(max(0.0, t1 + 0.6 - time.monotonic()))
        assert states(await s.state(1))["a"] == "suspect"
        await asyncio.sleep(max(0.0, t1 + 1.3 - time.monotonic()))
        assert states(await s.state(1))["a"] == "up"
        ok = await s.acquire(1, wait_s=0)
        assert ok["chain"] == 0 and await s.release(1, ok["lease"]) is True      # a success through a
        t2 = await failed_episode()                    # a new streak: 0.5 s again
        await asyncio.sleep(max(0.0, t2 + 0.85 - time.monotonic()))
        assert states(await s.state(1))["a"] == "up"
        assert t0 < t1 < t2
    run(body())
