"""Where a request's chain comes from (pluggable).

``LocalJFFC`` is an in-process join-the-fastest-free-chain dispatcher with one FIFO queue
and per-chain capacities, the same rule as the live dispatcher of ``serving.dispatch``.
``DispatchRoutes`` wraps ``serving.dispatch.client.DispatchClient`` (the live service)
when it is installed.  Both hand out ``Grant(chain, hops)`` and take it back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Hop:
    server: str
    start_block: int
    num_blocks: int


@dataclass
class Grant:
    chain: int
    hops: list[Hop]
    waited_s: float
    lease: object = None


def chain_hops(plan_chain: dict, placement: dict[str, dict]) -> list[Hop]:
    """A plan chain's servers with the block range each runs (consecutive, from block 0)."""
    hops, start = [], 0
    for server, n in zip(plan_chain["servers"], plan_chain["blocks"]):
        hops.append(Hop(server, start, int(n)))
        start += int(n)
    return hops


class LocalJFFC:
    """JFFC over the plan's chains: grant the fastest chain with Z_k < c_k, else wait in FIFO order."""

    name = "in-process JFFC"

    def __init__(self, plan_doc: dict):
        self.chains = plan_doc["chains"]
        placement = {p["server"]: p for p in plan_doc["placement"]}
        self.hops = [chain_hops(ch, placement) for ch in self.chains]
        self.order = sorted(range(len(self.chains)), key=lambda k: self.chains[k]["service_time_s"])
        self.capacity = [int(ch["capacity"]) for ch in self.chains]
        self.in_progress = [0] * len(self.chains)
        self.max_seen = [0] * len(self.chains)
        self._cv = threading.Condition()
        self._queue: deque[object] = deque()

    def _free(self) -> int | None:
        for k in self.order:
            if self.in_progress[k] < self.capacity[k]:
                return k
        return None

    def acquire(self, timeout_s: float = 300) -> Grant:
        t0 = time.monotonic()
        me = object()
        with self._cv:
            self._queue.append(me)
            while True:
                k = self._free() if self._queue[0] is me else None
                if k is not None:
                    self._queue.popleft()
                    self.in_progress[k] += 1
                    self.max_seen[k] = max(self.max_seen[k], self.in_progress[k])
                    self._cv.notify_all()
                    return Grant(k, self.hops[k], time.monotonic() - t0)
                left = timeout_s - (time.monotonic() - t0)
                if left <= 0:
                    self._queue.remove(me)
                    self._cv.notify_all()
                    raise TimeoutError(f"no chain free within {timeout_s} s")
                self._cv.wait(left)

    def release(self, grant: Grant) -> None:
        with self._cv:
            self.in_progress[grant.chain] -= 1
            self._cv.notify_all()


class DispatchRoutes:
    """The live dispatcher service through its client library (issue 13)."""

    name = "live dispatcher (HTTP)"

    def __init__(self, base_url: str, cluster: int, token: str, auth_scheme: str = "Dispatch"):
        from serving.dispatch.client import DispatchClient   # lands with the dispatcher
        self.client = DispatchClient(base_url, cluster, token, auth_scheme=auth_scheme)

    def acquire(self, timeout_s: float = 300) -> Grant:
        from serving.dispatch.client import NoFreeChain
        deadline = time.monotonic() + timeout_s
        while True:   # 503 after wait_s: ask again (rare with a 60 s wait; the retry rejoins the queue's tail)
            lease = self.client.acquire(wait_s=max(1.0, min(60.0, deadline - time.monotonic())))
            try:
                lz = lease.__enter__()
                break
            except NoFreeChain:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no chain free within {timeout_s} s") from None
        hops = [Hop(h.server, h.start_block, h.num_blocks) for h in lz.servers]
        return Grant(lz.chain, hops, lz.waited_s, lease=lease)

    def release(self, grant: Grant) -> None:
        grant.lease.__exit__(None, None, None)
