"""serving.dispatch.failover on both real stores (MemoryStore and the Lua script on Redis): a hop failure is
reported with the release (the server's chains masked), the next lease is a surviving chain, the attempt
resumes with its state, and the bounds end in one FailoverExhausted with no slot held."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.dispatch import NoAdoptedPlan, NoFreeChain, RedisDispatchClient, ServerDown, StoreClient
from serving.dispatch.client import _SyncBase
from serving.dispatch.failover import FailoverExhausted, HopFailed, arun, astream, run
from serving.dispatch.liveness import LivenessConfig
from serving.dispatch.memory_store import MemoryStore
from serving.dispatch.protocol import Lease
from serving.dispatch.redis_store import RedisStore

from .conftest import backend_url, snapshot

# fastest first: "a" only on chain 0, "c" only on chain 1, "d" only on chain 2
THREE = [(["a", "b"], [2, 2], 1.0, 1), (["c"], [4], 2.0, 1), (["d"], [4], 3.0, 1)]
SLOW = LivenessConfig(suspect_s=30, suspect_max_s=60, heartbeat_timeout_s=30)     # masks stay for the test

pytestmark = pytest.mark.timeout(60)


def held_slots(st) -> int:
    return sum(c["in_progress"] for c in st["chains"])


def states(st) -> dict[str, str]:
    return {s["server"]: s["state"] for s in st["servers"]}


def test_a_hop_failure_is_reported_and_the_attempt_resumes_on_a_surviving_chain(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        client = StoreClient(s, 1)
        seen, failovers = [], []

        async def attempt(a):
            seen.append((a.number, a.lease.chain, list(a.state), a.resumed))
            if a.number == 1:
                a.state.append("first half")
                raise HopFailed("connection reset by peer", server="b")
            a.state.append("second half")
            return " + ".join(a.state)

        got = await arun(client, attempt, state=[], wait_s=1, on_failover=failovers.append)
        assert got == "first half + second half"
        assert seen == [(1, 0, [], False), (2, 1, ["first half"], True)]
        (f,) = failovers
        assert (f.attempt, f.chain, f.server, f.error, f.server_state) == (1, 0, "b", "connection reset by peer",
                                                                          "suspect")
        st = await s.state(1)
        assert [c["masked"] for c in st["chains"]] == [True, False, False]
        assert states(st)["b"] == "suspect" and held_slots(st) == 0
        obs = st["observations"]
        assert obs["failures"] == 1 and obs["grants"] == obs["releases"] == 2
    asyncio.run(body())


def test_a_stream_fails_over_and_the_consumer_sees_every_item_once(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        closed = []

        async def attempt(a):
            try:
                for i in range(len(a.state), 10):
                    if a.number == 1 and i == 4:
                        raise HopFailed("step past its deadline", server="a")
                    if a.number == 2 and i == 7:
                        raise HopFailed("no answer", server=None)      # unknown hop: the chain's first is named
                    a.state.append(i)
                    yield (a.lease.chain, i)
            finally:
                closed.append(a.number)

        got = [x async for x in astream(StoreClient(s, 1), attempt, state=[], wait_s=1)]
        assert [i for _, i in got] == list(range(10))
        assert [c for c, _ in got] == [0] * 4 + [1] * 3 + [2] * 3
        assert closed == [1, 2, 3]
        st = await s.state(1)
        assert states(st)["a"] == "suspect" and states(st)["c"] == "suspect" and held_slots(st) == 0
    asyncio.run(body())


def test_closing_the_stream_closes_the_attempt_then_releases_its_lease(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        events = []

        async def attempt(a):
            try:
                for i in range(1000):
                    yield i
                    await asyncio.sleep(0.01)
            finally:
                events.append(("closed", held_slots(await s.state(1))))

        it = astream(StoreClient(s, 1), attempt)
        assert [await it.__anext__() for _ in range(3)] == [0, 1, 2]
        assert held_slots(await s.state(1)) == 1
        await it.aclose()
        assert events == [("closed", 1)]            # the attempt closed while its lease was still held
        st = await s.state(1)
        assert held_slots(st) == 0 and st["observations"]["failures"] == 0
    asyncio.run(body())


@pytest.mark.parametrize("variant", ["arun", "astream"])
def test_a_lease_taken_back_on_renewal_stops_a_hung_attempt_and_fails_over(store_factory, variant):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE, ttl_s=0.3))       # renewed every 0.1 s
        client = StoreClient(s, 1)

        async def hang_then_answer(a):
            if a.number == 1:
                asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(
                    s.set_server_state(1, "a", "down", cause="test: heartbeats stopped")))
                await asyncio.sleep(30)                          # a hop that never answers
            return a.lease.chain

        async def hang_then_yield(a):
            if a.number == 1:
                yield "first"
            answer = await hang_then_answer(a)
            yield answer

        t0 = time.monotonic()
        if variant == "arun":
            got = [await arun(client, hang_then_answer, wait_s=1)]
        else:
            got = [x async for x in astream(client, hang_then_yield, wait_s=1)]
        assert time.monotonic() - t0 < 2.0
        assert got == ([1] if variant == "arun" else ["first", 1])
        st = await s.state(1)
        assert held_slots(st) == 0 and st["observations"]["revoked"] == 1
    asyncio.run(body())


def test_when_every_chain_fails_one_failover_exhausted_names_them_all_and_no_slot_is_held(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        await s.set_plan(1, snapshot(THREE))
        client = StoreClient(s, 1)

        async def dead(a):
            raise HopFailed("connection refused", server=a.lease.servers[-1].server)

        with pytest.raises(FailoverExhausted) as err:
            await arun(client, dead, wait_s=5, max_attempts=3)
        e = err.value
        assert e.status == 503 and e.retry_after_s == 1.0 and (b"retry-after", b"1") in e.headers
        assert [(f.chain, f.server) for f in e.failures] == [(0, "b"), (1, "c"), (2, "d")]
        assert "3 hop failures" in e.detail and "chain 2: server d: connection refused" in e.detail
        assert "no attempt left (3 at most)" in e.detail and isinstance(e.__cause__, HopFailed)
        assert held_slots(await s.state(1)) == 0

        # with more attempts allowed, every chain is masked: the re-acquire waits out the fail-over window
        for server in ("b", "c", "d"):
            await s.set_server_state(1, server, "up")
        t0 = time.monotonic()
        with pytest.raises(FailoverExhausted, match="then no chain was granted") as err:
            await arun(client, dead, wait_s=5, max_attempts=10, max_failover_s=0.5)
        assert 0.4 < time.monotonic() - t0 < 3 and len(err.value.failures) == 3
        assert isinstance(err.value.__cause__, NoFreeChain)
        st = await s.state(1)
        assert held_slots(st) == 0 and st["queue_length"] == 0
    asyncio.run(body())


def test_other_errors_and_first_refusals_pass_through_unchanged(store_factory):
    async def body():
        s = store_factory(liveness=SLOW)
        client = StoreClient(s, 1)

        async def never(a):
            raise AssertionError("not reached")
        with pytest.raises(NoAdoptedPlan):
            await arun(client, never)
        await s.set_plan(1, snapshot(THREE[1:2]))

        async def bad_request(a):
            raise ValueError("the prompt is too long for this model")
        with pytest.raises(ValueError, match="too long"):
            await arun(client, bad_request)
        st = await s.state(1)
        assert held_slots(st) == 0 and st["observations"]["failures"] == 0

        lease = await s.acquire(1, wait_s=0)                   # the only slot
        with pytest.raises(NoFreeChain):
            await arun(client, never, wait_s=0)
        await s.release(1, lease["lease"])

        async def hop(a):
            raise HopFailed("reset", server="c")
        with pytest.raises(HopFailed):                         # reported, then no resume: the error as it was
            await arun(client, hop, can_resume=lambda state, failure: False)
        st = await s.state(1)
        assert states(st)["c"] == "suspect" and held_slots(st) == 0
    asyncio.run(body())


class _LoopClient(_SyncBase):
    """The blocking client calls over an in-process MemoryStore running on a loop thread of its own."""

    def __init__(self, store: MemoryStore, cluster: int):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.inner = StoreClient(store, cluster)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def acquire_lease(self, wait_s=30, policy=None) -> Lease:
        return self._call(self.inner.acquire_lease(wait_s=wait_s, policy=policy))

    def release(self, lease, failed=None):
        return self._call(self.inner.release(lease, failed=failed))

    def renew(self, lease):
        return self._call(self.inner.renew(lease))

    def state(self):
        return self._call(self.inner.state())

    def call(self, coro):
        return self._call(coro)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(params=["memory", "redis", "cluster"])
def sync_client(request, prefix):
    if request.param == "memory":
        store = MemoryStore(liveness=SLOW)
        c = _LoopClient(store, 1)
        c.call(store.set_plan(1, snapshot(THREE, ttl_s=0.3)))
        c.set_down = lambda server: c.call(store.set_server_state(1, server, "down"))
        yield c
        c.close()
    else:
        url = backend_url(request.param)
        admin = RedisStore(url, prefix=prefix, liveness=SLOW)
        admin.set_plan(1, snapshot(THREE, ttl_s=0.3))
        c = RedisDispatchClient(url, 1, prefix=prefix, liveness=SLOW)
        c.set_down = lambda server: admin.set_server_state(1, server, "down")
        yield c
        c.close()
        admin.clear()


def test_the_blocking_helper_fails_over_on_a_hop_error_and_on_a_lease_taken_back(sync_client):
    progress = []

    def attempt(a):
        if a.number == 1:
            progress.append("x")
            raise HopFailed("connection refused", server="a")
        if a.number == 2:                     # chain 1: its server goes down while the attempt runs
            sync_client.set_down("c")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                a.check()                     # raises ServerDown once the renewal (every 0.1 s) was refused
                time.sleep(0.02)
            raise AssertionError("the renewal never reported the server down")
        return (a.lease.chain, list(a.state))

    failovers = []
    assert run(sync_client, attempt, state=progress, wait_s=1, on_failover=failovers.append) == (2, ["x"])
    assert [(f.server, f.server_state) for f in failovers] == [("a", "suspect"), ("c", "down")]
    st = sync_client.state()
    assert held_slots(st) == 0 and [c["masked"] for c in st["chains"]] == [True, True, False]

    def down_at_once(a):                         # chain 2, the last one left, goes down too
        sync_client.set_down("d")
        time.sleep(0.4)
        a.check()
    with pytest.raises(FailoverExhausted, match="chain 2: server d: .*no attempt left") as err:
        run(sync_client, down_at_once, wait_s=0.2, max_attempts=1)
    assert isinstance(err.value.__cause__, ServerDown)
    assert held_slots(sync_client.state()) == 0
