"""The client library: context managers renew in the background and release on exit (HTTP and Redis-direct)."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.dispatch import (AsyncDispatchClient, AsyncRedisDispatchClient, DispatchClient, Hop, InvalidRequest,
                              LeaseGone, NoAdoptedPlan, NoFreeChain, RedisDispatchClient, ServerDown)

from .conftest import REDIS_URL, TWO, snapshot


def _check_renewed_and_released(store, cluster=1):
    st = store.state(cluster)
    assert st["observations"]["expiries"] == 0
    assert st["observations"]["releases"] == st["observations"]["grants"] >= 1
    assert all(c["in_progress"] == 0 for c in st["chains"])


def test_sync_http_client_holds_a_lease_past_its_ttl(dispatcher):
    dispatcher.store.set_plan(1, snapshot(TWO, ttl_s=0.4))
    client = DispatchClient(dispatcher.url, 1, dispatcher.token(1))
    with client.acquire(wait_s=5) as lease:
        assert lease.chain == 0 and lease.servers[0] == Hop("a", 0, 2)
        time.sleep(1.3)                               # > 3 TTLs: only background renewal keeps it
        assert dispatcher.store.renew(1, lease.lease) is not None
    assert client.release(lease) is False           # already released by the context manager
    with pytest.raises(LeaseGone):
        client.renew(lease)
    _check_renewed_and_released(dispatcher.store)
    assert client.state()["chains"][0] == {"chain": 0, "capacity": 2, "in_progress": 0, "masked": False}
    client.close()


def test_async_http_client_and_errors(dispatcher):
    dispatcher.store.set_plan(1, snapshot([(["a"], [4], 1.0, 1)], ttl_s=0.4))
    token = dispatcher.token(1)

    async def body():
        async with AsyncDispatchClient(dispatcher.url, 1, token) as client:
            async with client.acquire(wait_s=5) as lease:
                await asyncio.sleep(1.3)
                with pytest.raises(NoFreeChain) as exc:
                    await client.acquire_lease(wait_s=0)
                assert exc.value.retry_after_s == 1.0
            assert lease.chain == 0
        async with AsyncDispatchClient(dispatcher.url, 9, dispatcher.token(9)) as other:
            with pytest.raises(NoAdoptedPlan, match="no adopted plan"):
                await other.acquire_lease(wait_s=0)
    asyncio.run(body())
    _check_renewed_and_released(dispatcher.store)


def test_redis_direct_clients(dispatcher):
    """No HTTP hop, the same scripts: leases from both paths share the slots."""
    dispatcher.store.set_plan(1, snapshot([(["a"], [4], 1.0, 1)], ttl_s=0.4))
    direct = RedisDispatchClient(REDIS_URL, 1, prefix=dispatcher.prefix)
    http = DispatchClient(dispatcher.url, 1, dispatcher.token(1))
    with direct.acquire(wait_s=5) as lease:
        time.sleep(1.0)
        with pytest.raises(NoFreeChain):
            http.acquire_lease(wait_s=0)
    assert lease.servers == [Hop("a", 0, 4)]

    async def body():
        c = AsyncRedisDispatchClient(REDIS_URL, 1, prefix=dispatcher.prefix)
        async with c.acquire(wait_s=5) as got:
            await asyncio.sleep(1.0)
        with pytest.raises(LeaseGone):
            await c.renew(got)
        await c.aclose()
    asyncio.run(body())
    _check_renewed_and_released(dispatcher.store)
    direct.close()
    http.close()


PAIR = [(["a", "b"], [2, 2], 1.0, 2), (["c"], [4], 2.0, 1)]


def test_clients_report_failed_hops_and_stop_on_a_down_server(dispatcher):
    """HTTP and Redis-direct, sync and async: lease.fail() reports with the release; a renewal through a
    server that is down ends the lease with ServerDown naming it."""
    store = dispatcher.store
    store.set_plan(1, snapshot(PAIR, ttl_s=0.4))
    token = dispatcher.token(1)
    client = DispatchClient(dispatcher.url, 1, token)
    held = client.acquire(wait_s=5)
    with held as lease:
        assert lease.chain == 0
        store.set_server_state(1, "a", "down", cause="test: a is gone")
        time.sleep(0.6)                                # background renewals every ttl/3
        assert isinstance(held.lost, ServerDown) and held.lost.server == "a"
    assert held.released is False                      # the lease ended on that renewal
    assert store.state(1)["observations"]["revoked"] == 1
    store.set_server_state(1, "a", "up")

    held = client.acquire(wait_s=5)
    with held as lease:
        with pytest.raises(InvalidRequest, match="server 'c' is not on lease"):
            lease.fail("c", "wrong hop")
        lease.fail("b", "connection reset by peer")
    assert held.released == {"released": True, "server": "b", "server_state": "suspect"}
    st = client.state()
    assert [c["masked"] for c in st["chains"]] == [True, False]
    assert {s["server"]: s["state"] for s in st["servers"]}["b"] == "suspect"
    with client.acquire(wait_s=5) as other:
        assert other.chain == 1                        # chain 0 is masked
    store.set_server_state(1, "b", "up")

    async def body():
        async with AsyncDispatchClient(dispatcher.url, 1, token) as c:
            lease = await c.acquire_lease(wait_s=5)
            store.set_server_state(1, "a", "down")
            with pytest.raises(ServerDown) as exc:
                await c.renew(lease)
            assert exc.value.server == "a" and exc.value.status == 410
            store.set_server_state(1, "a", "up")
            lease = await c.acquire_lease(wait_s=5)
            assert await c.release(lease, failed={"server": "a", "error": "x"}) == {
                "released": True, "server": "a", "server_state": "suspect"}
            store.set_server_state(1, "a", "up")
        direct = AsyncRedisDispatchClient(REDIS_URL, 1, prefix=dispatcher.prefix)
        ctx = direct.acquire(wait_s=5)
        async with ctx as lease:
            ctx.fail("a", "stream cut")
        assert ctx.released == {"released": True, "server": "a", "server_state": "suspect"}
        await direct.aclose()
    asyncio.run(body())
    store.set_server_state(1, "a", "up")
    sync_direct = RedisDispatchClient(REDIS_URL, 1, prefix=dispatcher.prefix)
    lease = sync_direct.acquire_lease(wait_s=5)
    store.set_server_state(1, "b", "down")
    with pytest.raises(ServerDown, match="'b'"):
        sync_direct.renew(lease)
    store.set_server_state(1, "b", "up")
    lease = sync_direct.acquire_lease(wait_s=5)
    lease.fail("b", "eof")
    assert sync_direct.release(lease) == {"released": True, "server": "b", "server_state": "suspect"}
    causes = [e["cause"] for e in store.events(1)]
    assert causes[0] == "test: a is gone" and causes.count("failure report: stream cut") == 1
    obs = store.state(1)["observations"]
    assert (obs["failures"], obs["revoked"]) == (4, 3)
    sync_direct.close()
    client.close()
