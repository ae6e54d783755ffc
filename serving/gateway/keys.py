"""Gateway keys: ``Authorization: Bearer <key>``, each key scoped to one cluster.

Keys are issued and revoked by the service (``planner_app.gateway``) and, like dispatch tokens,
only their digests are kept and mirrored into the dispatcher's store, where this process looks
them up on every request (so a revoked key is refused at once, with no Django in this process).
Gateway keys share the store's token table with dispatch tokens, so the two must never be
mistaken for one another: the hash is taken over a domain-separated string (a dispatch token is
never a gateway key) and the stored entry carries a prefix that no SHA-256 hex digest has (so
``Authorization: Dispatch chainplan-gateway-key:<key>`` is no dispatch token either).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from serving.dispatch.protocol import DispatchStore

__all__ = ["KEY_DIGEST_PREFIX", "KEY_DOMAIN", "KeySource", "StoreKeys", "key_digest"]

KEY_DOMAIN = "chainplan-gateway-key:"
KEY_DIGEST_PREFIX = "gateway-key:"      # dispatch tokens are bare hex digests: this never is one


def key_digest(key: str) -> str:
    """What the store keeps for a gateway key (never the key itself): 76 characters."""
    return KEY_DIGEST_PREFIX + hashlib.sha256((KEY_DOMAIN + key).encode()).hexdigest()


class KeySource(Protocol):
    async def cluster_of(self, key: str) -> int | None:
        """The cluster the key belongs to; None for an unknown or revoked key."""
        ...


class StoreKeys:
    """Keys looked up in the dispatcher's store (memory or Redis), one GET per request."""

    def __init__(self, store: DispatchStore):
        self.store = store

    async def cluster_of(self, key: str) -> int | None:
        return await self.store.token_cluster(key_digest(key))

    async def put(self, key: str, cluster: int) -> None:
        """Allow ``key`` for ``cluster`` (standalone use without the service: ``python -m serving.gateway key``)."""
        await self.store.put_token(key_digest(key), cluster)
