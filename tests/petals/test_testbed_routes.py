"""The testbed's in-process routes are the real dispatcher (serving.dispatch's in-memory store):
fastest free chain first, one FIFO queue, per-chain capacity, the plan's hops (pure: no swarm)."""

from __future__ import annotations

import threading
import time

import pytest

from testbed.routes import Hop, MemoryRoutes, chain_hops

PLAN = {"chains": [
    {"servers": ["small-1", "small-2", "small-3"], "blocks": [3, 3, 2], "service_time_s": 0.9, "capacity": 1},
    {"servers": ["large-1"], "blocks": [8], "service_time_s": 0.5, "capacity": 2},
]}


def test_fastest_free_chain_with_its_hops_then_the_next():
    routes = MemoryRoutes(PLAN)
    grants = [routes.acquire(timeout_s=1) for _ in range(3)]
    assert [g.chain for g in grants] == [1, 1, 0]          # the 0.5 s chain until its 2 slots are busy
    assert grants[0].hops == [Hop("large-1", 0, 8)]
    assert grants[2].hops == chain_hops(PLAN["chains"][0]) == [
        Hop("small-1", 0, 3), Hop("small-2", 3, 3), Hop("small-3", 6, 2)]
    routes.release(grants[0])
    assert routes.acquire(timeout_s=1).chain == 1          # a released slot is granted again


def test_waiters_are_served_in_arrival_order_and_give_up_with_timeout_error():
    routes = MemoryRoutes({"chains": [dict(PLAN["chains"][1], capacity=1)]})
    held = routes.acquire(timeout_s=1)
    order: list[int] = []

    def wait(i: int) -> None:
        g = routes.acquire(timeout_s=10)
        order.append(i)
        routes.release(g)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=wait, args=(i,)))
        threads[-1].start()
        time.sleep(0.1)                                     # queued one after the other
    routes.release(held)
    for th in threads:
        th.join(timeout=10)
    assert order == [0, 1, 2]

    held = routes.acquire(timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="no chain free within 0.3 s"):
        routes.acquire(timeout_s=0.3)
    assert time.monotonic() - t0 >= 0.3
    routes.release(held)


def test_a_lease_outlives_a_replayed_request():
    """Leases are never renewed by the testbed, so the store must not expire one under a request."""
    routes = MemoryRoutes(PLAN)
    state = routes.store.acquire_blocking(1, wait_s=0)
    assert state["ttl_s"] >= 300


def test_a_malformed_plan_is_named():
    from serving.dispatch.snapshot import PlanError
    with pytest.raises(PlanError, match=r"chains\[0\]\.service_time_s"):
        MemoryRoutes({"chains": [{"servers": ["a"], "blocks": [8]}]})
