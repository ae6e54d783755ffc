"""Where the gateway's leases come from: the dispatcher, over HTTP or straight from its store.

Both give, per cluster, a client of ``serving.dispatch`` whose ``acquire(wait_s)`` is an async
context manager: the lease is renewed in the background and released on exit, whatever ends the
request (its answer, the client going away, a failure).
"""

from __future__ import annotations

from typing import Mapping, Protocol

from serving.dispatch import AsyncDispatchClient, AsyncRedisDispatchClient, StoreClient
from serving.dispatch.protocol import DispatchError, DispatchStore

__all__ = ["LeaseSource", "StoreLeases", "HttpLeases", "NoDispatchCredentials"]


class NoDispatchCredentials(DispatchError):
    """The gateway has no dispatch token for this cluster (a deployment mistake, 503)."""

    status = 503


class LeaseSource(Protocol):
    def client(self, cluster: int) -> AsyncDispatchClient | AsyncRedisDispatchClient: ...

    async def aclose(self) -> None: ...


class StoreLeases:
    """Leases straight from a store: ``AsyncRedisStore`` (Redis-direct) or a ``MemoryStore``."""

    def __init__(self, store: DispatchStore):
        self.store = store
        self._clients: dict[int, StoreClient] = {}

    def client(self, cluster: int) -> StoreClient:
        got = self._clients.get(cluster)
        if got is None:
            got = self._clients[cluster] = StoreClient(self.store, cluster)
        return got

    async def aclose(self) -> None:
        self._clients.clear()


class HttpLeases:
    """Leases from the dispatcher's HTTP endpoints, with one dispatch token per cluster."""

    def __init__(self, base_url: str, tokens: Mapping[int, str], *, auth_scheme: str = "Dispatch"):
        self.base_url = base_url
        self.tokens = dict(tokens)
        self.auth_scheme = auth_scheme
        self._clients: dict[int, AsyncDispatchClient] = {}

    def client(self, cluster: int) -> AsyncDispatchClient:
        got = self._clients.get(cluster)
        if got is None:
            token = self.tokens.get(cluster)
            if token is None:
                raise NoDispatchCredentials(f"the gateway has no dispatch token for cluster {cluster} "
                                            f"(--dispatch-token {cluster}=TOKEN)")
            got = self._clients[cluster] = AsyncDispatchClient(self.base_url, cluster, token,
                                                               auth_scheme=self.auth_scheme)
        return got

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
