"""Write paths of the dispatch domain: tokens, plan snapshots to the store, observations from it."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from serving.dispatch.protocol import SyncDispatchStore
from serving.dispatch.snapshot import PlanError, snapshot_from_document

from ..catalog.models import Cluster
from ..planning.models import Job, Trigger
from .models import DispatchObservation, DispatchToken
from .store import sync_store

log = logging.getLogger("planner_app.dispatch")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(cluster: Cluster, user) -> str:
    """A new dispatch token for the cluster; only its digest is stored (and mirrored to the store)."""
    token = secrets.token_urlsafe(30)
    digest = token_digest(token)
    DispatchToken.objects.create(cluster=cluster, digest=digest, hint=token[:6], created_by=user)
    mirror_on_commit(digest, cluster.pk, "a dispatch token")
    return token


def mirror_on_commit(digest: str, cluster_id: int, what: str) -> None:
    """Once the transaction commits, the store accepts ``digest`` for the cluster (tokens and gateway keys)."""
    def mirror():
        try:
            sync_store().put_token(digest, cluster_id)
        except Exception:  # noqa: BLE001 - the background sync mirrors it as soon as the store is back
            log.exception("could not mirror %s of cluster %s to the store", what, cluster_id)
    transaction.on_commit(mirror)


def forget_on_commit(digest: str, cluster_id: int, what: str) -> None:
    """Once the transaction commits, the store forgets ``digest``: the next request with it is refused."""
    def forget():
        try:
            sync_store().drop_token(digest)
        except Exception:  # noqa: BLE001 - the next full sync drops it as soon as the store is back
            log.exception("could not drop %s of cluster %s from the store", what, cluster_id)
    transaction.on_commit(forget)


def mirror_rows(store: SyncDispatchStore, rows) -> None:
    """Write (digest, cluster_id, revoked_at) rows to the store: live ones put, revoked ones dropped again."""
    for digest, cluster_id, revoked in rows:
        if revoked is None:
            store.put_token(digest, cluster_id)
        else:
            store.drop_token(digest)


def token_revoke(cluster: Cluster, token_id: int) -> DispatchToken | None:
    """Revoke one of the cluster's dispatch tokens: the store forgets it when the transaction commits.

    The dispatcher looks dispatch tokens up in the store on every call (no cache), so the next
    request with the token is refused.  None: no such token on this cluster.
    """
    return revoke_row(DispatchToken.objects.filter(cluster=cluster, pk=token_id).first(), "a revoked dispatch token")


def revoke_row(row, what: str):
    """Mark a stored secret's row (dispatch token, gateway key) revoked, once, and have the store forget it
    on commit (again on a second revocation, in case the first drop was lost).  None stays None."""
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
    forget_on_commit(row.digest, row.cluster_id, what)
    return row


def snapshot_for(cluster: Cluster) -> dict[str, Any] | None:
    """The compiled snapshot of the cluster's adopted plan (None: nothing to dispatch to)."""
    plan = cluster.adopted_plan
    if plan is None:
        return None
    try:
        return snapshot_from_document(plan.pk, plan.document, policy=cluster.dispatch_policy,
                                      ttl_s=settings.DISPATCH_LEASE_TTL_S)
    except PlanError as exc:
        log.warning("plan %s of cluster %s cannot be dispatched to: %s", plan.pk, cluster.pk, exc)
        return None


def push_plan(cluster_id: int) -> None:
    """After the transaction commits, give the dispatcher the cluster's adopted plan (or withdraw it)."""
    def push():
        cluster = Cluster.objects.select_related("adopted_plan").filter(pk=cluster_id).first()
        try:
            sync_store().set_plan(cluster_id, snapshot_for(cluster) if cluster else None)
        except Exception:  # noqa: BLE001 - the background sync pushes it as soon as the store is back
            log.exception("could not push the adopted plan of cluster %s to the dispatcher", cluster_id)
    transaction.on_commit(push)


_pushed: dict[int, tuple] = {}
_full_sync_at = [0.0]
FULL_SYNC_S = 60.0


def sync_store_with_database(store: SyncDispatchStore | None = None) -> dict[str, int]:
    """Make the store dispatch every cluster's adopted plan and know every dispatch token.

    Run every few seconds by the dispatcher (it is how an adoption made in another process, such as
    the Celery worker's re-planning, reaches an in-memory store).  Unchanged plans are skipped;
    every FULL_SYNC_S everything is written again, in case the store lost it.
    """
    store = store or sync_store()
    now = time.monotonic()
    full = now - _full_sync_at[0] > FULL_SYNC_S
    if full:
        _pushed.clear()
        _full_sync_at[0] = now
    pushed = withdrawn = 0
    rows = Cluster.objects.filter(adopted_plan__isnull=False).values_list("pk", "adopted_plan_id", "dispatch_policy")
    adopted = set()
    for pk, plan_id, policy in rows:
        adopted.add(pk)
        key = (plan_id, policy, settings.DISPATCH_LEASE_TTL_S)
        if _pushed.get(pk) == key:
            continue
        cluster = Cluster.objects.select_related("adopted_plan").get(pk=pk)
        store.set_plan(pk, snapshot_for(cluster))
        _pushed[pk] = key
        pushed += 1
    for pk in list(_pushed):
        if pk not in adopted:
            store.set_plan(pk, None)
            del _pushed[pk]
            withdrawn += 1
    if full:
        for cluster_id in store.clusters():
            if cluster_id not in adopted:
                store.set_plan(cluster_id, None)
                withdrawn += 1
        mirror_rows(store, DispatchToken.objects.values_list("digest", "cluster_id", "revoked_at"))
    return {"pushed": pushed, "withdrawn": withdrawn}


def _recent_trigger(cluster_id: int, trigger: str) -> bool:
    since = timezone.now() - timedelta(seconds=settings.DISPATCH_REPLAN_COOLDOWN_S)
    return Job.objects.filter(cluster_id=cluster_id, trigger=trigger, created_at__gte=since).exists()


def observation_record(cluster_id: int, state: dict[str, Any]) -> DispatchObservation | None:
    """Keep one aggregate of the dispatcher's state, and feed re-planning.

    - the observed-load trigger gets the dispatcher's measured arrival rate;
    - a chain whose measured service time (acquire to release, over at least
      DISPATCH_DRIFT_MIN_COMPLETED requests) differs from the plan's prediction by more than the
      cluster's calibration threshold triggers a re-plan.
    Both at most once per DISPATCH_REPLAN_COOLDOWN_S per cluster and reason.
    """
    from ..replanning.services import observed_load_record, replan_trigger

    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return None
    obs = state.get("observations", {})
    chains = [{**c, **o} for c, o in zip(state.get("chains", []), obs.get("chains", []))]
    plan_id = state.get("plan")
    row = DispatchObservation.objects.create(
        cluster=cluster, plan_id=plan_id if cluster.adopted_plan_id == plan_id else None,
        period_s=settings.DISPATCH_OBSERVE_S, arrival_rate=state.get("arrival_rate"),
        arrivals=obs.get("arrivals", 0), grants=obs.get("grants", 0), releases=obs.get("releases", 0),
        expiries=obs.get("expiries", 0), timeouts=obs.get("timeouts", 0), mean_wait_s=obs.get("mean_wait_s"),
        queue_length=state.get("queue_length", 0), chains=chains)
    rate = state.get("arrival_rate")
    if rate:
        if _recent_trigger(cluster_id, Trigger.LOAD):
            Cluster.objects.filter(pk=cluster_id).update(observed_arrival_rate=rate, observed_window_s=60.0,
                                                         observed_at=timezone.now())
        else:
            observed_load_record(cluster, rate, 60.0)
    if cluster.adopted_plan_id and cluster.adopted_plan_id == plan_id and \
            not _recent_trigger(cluster_id, Trigger.SERVICE_TIME):
        threshold = cluster.replan_calibration_threshold
        for c in chains:
            measured, predicted = c.get("measured_service_time_s"), c.get("predicted_service_time_s")
            if measured is None or not predicted or c.get("completed", 0) < settings.DISPATCH_DRIFT_MIN_COMPLETED:
                continue
            drift = abs(measured - predicted) / predicted
            if drift > threshold:
                replan_trigger(cluster_id, Trigger.SERVICE_TIME,
                               f"chain {c['chain']}: measured service time {measured:.4g} s differs "
                               f"{drift:.0%} from the plan's {predicted:.4g} s (threshold {threshold:.0%}, "
                               f"{c['completed']} requests)")
                break
    cutoff = timezone.now() - timedelta(days=settings.DISPATCH_OBSERVATION_DAYS)
    DispatchObservation.objects.filter(cluster_id=cluster_id, created_at__lt=cutoff).delete()
    return row
