"""Write paths of the gateway domain: keys issued and revoked, their digests mirrored to the dispatcher's store."""

from __future__ import annotations

import secrets
from typing import NamedTuple

from serving.dispatch.protocol import SyncDispatchStore
from serving.gateway.keys import key_digest

from ..catalog.models import Cluster
from ..dispatch.services import forget_on_commit, mirror_on_commit, mirror_rows, revoke_row
from ..dispatch.store import sync_store
from .models import GatewayKey

KEY_PREFIX = "sk-"      # what OpenAI clients and tools expect an API key to look like
HINT_CHARS = 8          # the prefix and five random characters


class IssuedKey(NamedTuple):
    row: GatewayKey
    key: str            # the only time the key itself exists outside its holder


def key_create(cluster: Cluster, user) -> IssuedKey:
    """A new gateway key for the cluster; only its digest is stored (and mirrored to the store on commit)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = key_digest(key)
    row = GatewayKey.objects.create(cluster=cluster, digest=digest, hint=key[:HINT_CHARS], created_by=user)
    mirror_on_commit(digest, cluster.pk, "a gateway key")
    return IssuedKey(row, key)


def key_revoke(cluster: Cluster, key_id: int) -> GatewayKey | None:
    """Revoke one of the cluster's gateway keys: the store forgets it when the transaction commits.

    The gateway looks keys up in the store on every request (no cache), so the next request with
    the key is refused (401).  None: no such key on this cluster.
    """
    return revoke_row(GatewayKey.objects.filter(cluster=cluster, pk=key_id).first(), "a revoked gateway key")


def key_forget(row: GatewayKey) -> None:
    """A deleted key (its cluster was deleted) leaves the store too, or it would authenticate forever."""
    forget_on_commit(row.digest, row.cluster_id, "a deleted gateway key")


def sync_keys_with_database(store: SyncDispatchStore | None = None) -> int:
    """Write every key to the store again (live ones put, revoked ones dropped), in case the store lost them.

    Run by the dispatcher's background loop at start and every FULL_SYNC_S: how a key issued while
    the store was unreachable, or an in-memory store after a restart, comes to know it.
    """
    rows = list(GatewayKey.objects.values_list("digest", "cluster_id", "revoked_at"))
    mirror_rows(store or sync_store(), rows)
    return len(rows)
