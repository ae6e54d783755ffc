"""Read paths of the dispatch domain."""

from __future__ import annotations

from typing import Any

from .models import DispatchObservation, DispatchToken
from .store import sync_store


def dispatcher_view(cluster) -> dict[str, Any]:
    """The dispatcher panel of a cluster: live state from the store and the latest stored aggregates."""
    try:
        state = sync_store().state(cluster.pk)
        state.pop("_raw", None)
        live, error = state, None
    except Exception as exc:  # noqa: BLE001 - the panel says the dispatcher's store is unreachable
        live, error = None, f"the dispatcher's store is unavailable: {exc}"
    history = list(DispatchObservation.objects.filter(cluster=cluster)
                   .values("created_at", "arrival_rate", "grants", "mean_wait_s", "queue_length")[:60])
    return {
        "cluster": cluster.pk, "adopted_plan": cluster.adopted_plan_id, "policy": cluster.dispatch_policy,
        "state": live, "error": error, "history": history[::-1],
        "tokens": DispatchToken.objects.filter(cluster=cluster, revoked_at__isnull=True).count(),
        "endpoints": {action: f"/api/v1/clusters/{cluster.pk}/dispatch/{action}/"
                      for action in ("acquire", "release", "renew", "state")},
    }


def tokens_of(cluster):
    """The cluster's dispatch tokens, newest first (digests never leave the database)."""
    return DispatchToken.objects.filter(cluster=cluster).select_related("created_by")
