"""Where a request's chain comes from (pluggable).

``MemoryRoutes`` is the dispatcher of ``serving.dispatch`` run in this process on its in-memory
store (no Redis); ``DispatchRoutes`` is the live dispatcher service through
``serving.dispatch.client.DispatchClient``.  Both hand out ``Grant(chain, hops)`` and take it back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Mapping

from serving.dispatch import Hop   # the dispatcher's hop (server, start_block, num_blocks)
from serving.dispatch.memory_store import MemoryStore
from serving.dispatch.protocol import NoFreeChain
from serving.dispatch.snapshot import snapshot_from_document
from solvers.plan_format import ChainDoc


@dataclass
class Grant:
    chain: int
    hops: list[Hop]
    waited_s: float
    lease: object = None


def chain_hops(plan_chain: Mapping[str, Any]) -> list[Hop]:
    """A plan document's chain as its hops (server, start_block, num_blocks), read by the typed plan format."""
    return list(ChainDoc.from_dict(plan_chain).hops())


# A lease of the in-process store is never renewed, so it must outlive any replayed request (the
# worker gives up on a request after 300 s); an hour is the most the dispatcher's plan accepts.
MEMORY_LEASE_TTL_S = 3600.0
MEMORY_CLUSTER = 1


class MemoryRoutes:
    """The real dispatcher in this process: serving.dispatch's in-memory store holding the plan
    (join the fastest free chain, one FIFO queue, per-chain capacity), for machines without Redis."""

    name = "in-process JFFC"

    def __init__(self, plan_doc: dict, plan_id: int = 1, liveness=None):
        self.store = MemoryStore(liveness=liveness)
        snapshot = snapshot_from_document(plan_id, plan_doc, policy="jffc", ttl_s=MEMORY_LEASE_TTL_S)
        asyncio.run(self.store.set_plan(MEMORY_CLUSTER, snapshot))

    def acquire(self, timeout_s: float = 300) -> Grant:
        try:
            lease = self.store.acquire_blocking(MEMORY_CLUSTER, wait_s=timeout_s, policy="jffc")
        except NoFreeChain:
            raise TimeoutError(f"no chain free within {timeout_s} s") from None
        hops = [Hop(h["server"], int(h["start_block"]), int(h["num_blocks"])) for h in lease["servers"]]
        return Grant(lease["chain"], hops, lease["waited_s"], lease=lease["lease"])

    def release(self, grant: Grant, failed: dict | None = None) -> None:
        """``failed``: ``{"server", "error"}``, a hop of the grant that failed (its chains are masked at once)."""
        # the store's release is a coroutine for the HTTP app; it never awaits, so a private loop is enough
        asyncio.run(self.store.release(MEMORY_CLUSTER, grant.lease, failed=failed))


class DispatchRoutes:
    """The live dispatcher service through its client library (issue 13)."""

    name = "live dispatcher (HTTP)"

    def __init__(self, base_url: str, cluster: int, token: str, auth_scheme: str = "Dispatch"):
        from serving.dispatch.client import DispatchClient   # lands with the dispatcher
        self.client = DispatchClient(base_url, cluster, token, auth_scheme=auth_scheme)

    def acquire(self, timeout_s: float = 300) -> Grant:
        deadline = time.monotonic() + timeout_s
        while True:   # 503 after wait_s: ask again (rare with a 60 s wait; the retry rejoins the queue's tail)
            lease = self.client.acquire(wait_s=max(1.0, min(60.0, deadline - time.monotonic())))
            try:
                lz = lease.__enter__()
                break
            except NoFreeChain:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no chain free within {timeout_s} s") from None
        return Grant(lz.chain, list(lz.servers), lz.waited_s, lease=lease)

    def release(self, grant: Grant, failed: dict | None = None) -> None:
        """``failed``: ``{"server", "error"}``, reported with the release (the dispatcher masks the server)."""
        if failed is not None:
            grant.lease.fail(failed["server"], failed.get("error", ""))
        grant.lease.__exit__(None, None, None)
