"""Write paths of liveness: heartbeats and drains (mirrored to the dispatcher's store), the store's transitions
recorded, drains completed, and healing re-plans (docs/liveness.md).

The store decides a server's state (failure reports, heartbeats, its probation and timeout timers); the service
tells it what it hears (``mirror``) and keeps the record: each server's current state and the history.  One
round of ``liveness_poll`` (the dispatcher's background loop, every LIVENESS_POLL_S, one process at a time):

1. the store's new transitions become history entries (the cursor is the last event id recorded);
2. each server's current state is set to the store's (what the events missed, a lost drain re-applied);
3. a draining server with no lease in flight through it is drained: it leaves the plan;
4. healing: a server of the adopted plan that is down (or drained), or one that came back up and stayed up
   for LIVENESS_REJOIN_STABLE_S, starts a re-plan on the servers that are up, through re-planning's
   ``servers`` trigger (switching costs, the minimum gain, the normal adoption).  At most one such re-plan per
   LIVENESS_REPLAN_MIN_INTERVAL_S per cluster, and never two for the same adopted plan and servers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..catalog.models import Cluster, Server
from ..planning.models import Job, JobStatus, Trigger
from ..replanning.services import replan_trigger
from . import mirror
from .models import AWAY_STATES, ClusterLiveness, EventKind, LivenessEvent, ServerLiveness
from .selectors import adopted_shape, chains_through, leases_through, states_of, unavailable_servers

log = logging.getLogger("planner_app.liveness")

HEARTBEAT_STATES = ("up", "draining")


class NotDraining(Exception):
    """Ending a drain of a server that is not draining."""


# -- the record of one server ------------------------------------------------------------------------

def _row(server: Server, *, lock: bool = False) -> ServerLiveness:
    qs = ServerLiveness.objects.select_for_update() if lock else ServerLiveness.objects
    row = qs.filter(server=server).first()
    if row is None:
        row, _ = ServerLiveness.objects.get_or_create(server=server, defaults={"state": "up", "since": timezone.now()})
        if lock:
            row = ServerLiveness.objects.select_for_update().get(pk=row.pk)
    return row


def _set_state(row: ServerLiveness, state: str, since: datetime | None, cause: str) -> bool:
    """Move the record to ``state``; True when it changed.  Coming back up from away marks a rejoin; leaving
    up forgets it; leaving draining forgets that the drain had completed."""
    if state == row.state:
        return False
    prev = row.state
    row.state, row.since, row.cause = state, since or timezone.now(), cause[:500]
    if state == "up" and prev in AWAY_STATES:
        row.rejoined_at = row.since
    elif state != "up":
        row.rejoined_at = None
    if state != "draining":
        row.drained_at = None
    return True


ROW_FIELDS = ["state", "since", "cause", "rejoined_at", "drained_at"]


def _answer(row: ServerLiveness) -> dict[str, Any]:
    return {"server": row.server.server_id, "state": row.state, "since": row.since,
            "drain_requested": row.drain_requested_at is not None}


# -- heartbeats and drains (the endpoints) --------------------------------------------------------------

def heartbeat_record(server: Server, state: str, info: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat from beside ``server``: mirrored to the store, which answers the state it holds now.

    An owner's drain stands until the owner ends it: a heartbeat saying "up" is passed on as "draining".
    The record is written when the state changed, and otherwise at most every LIVENESS_HEARTBEAT_RECORD_S (the
    store keeps every heartbeat; the database need not, with thousands of servers beating every 2 s).
    """
    if state not in HEARTBEAT_STATES:
        raise ValueError(f"a heartbeat's state is 'up' or 'draining', not {state!r}")
    row = ServerLiveness.objects.filter(server=server).first()
    sent = "draining" if row is not None and row.drain_requested_at is not None else state
    answer = mirror.mirror_heartbeat(server.cluster_id, server.server_id, sent, info)
    now = timezone.now()
    if (row is not None and row.state == answer["state"] and row.last_heartbeat_at is not None
            and (now - row.last_heartbeat_at).total_seconds() < settings.LIVENESS_HEARTBEAT_RECORD_S):
        return {**_answer(row), "state": answer["state"]}
    with transaction.atomic():
        row = _row(server, lock=True)
        _set_state(row, answer["state"], answer["since"], "heartbeat")
        row.last_heartbeat_at = now
        row.heartbeat = {**info, "state": state}
        row.save(update_fields=[*ROW_FIELDS, "last_heartbeat_at", "heartbeat"])
    return _answer(row)


def drain_start(server: Server, by: str) -> dict[str, Any]:
    """Planned maintenance: the server takes no new grants from now on; once no lease in flight passes through it,
    the poller drains it and it leaves the plan through a re-plan.  Asking again changes nothing."""
    with transaction.atomic():
        row = _row(server, lock=True)
        answer = mirror.mirror_state(server.cluster_id, server.server_id, "draining", f"drain requested by {by}")
        if row.drain_requested_at is None:
            row.drain_requested_at, row.drain_requested_by = timezone.now(), by[:150]
        _set_state(row, answer["state"], answer["since"], f"drain requested by {by}")
        row.save(update_fields=[*ROW_FIELDS, "drain_requested_at", "drain_requested_by"])
    return _answer(row)


def drain_end(server: Server, by: str) -> dict[str, Any]:
    """The owner ends a drain: the server is up again (and rejoins the plan through a re-plan once it stays up)."""
    with transaction.atomic():
        row = _row(server, lock=True)
        if row.drain_requested_at is None and row.state != "draining":
            raise NotDraining(f"server {server.server_id!r} is not draining (it is {row.state})")
        answer = mirror.mirror_state(server.cluster_id, server.server_id, "up", f"drain ended by {by}")
        row.drain_requested_at, row.drain_requested_by = None, ""
        _set_state(row, answer["state"], answer["since"], f"drain ended by {by}")
        row.save(update_fields=[*ROW_FIELDS, "drain_requested_at", "drain_requested_by"])
    return _answer(row)


# -- the poller ----------------------------------------------------------------------------------------

def liveness_poll() -> dict[str, int]:
    """One round over every cluster the store dispatches for (the dispatcher's background loop calls it)."""
    totals = {"clusters": 0, "events": 0, "drained": 0, "replans": 0}
    for cluster_id in mirror.store_clusters():
        try:
            got = cluster_poll(cluster_id)
        except mirror.StoreUnavailable:
            raise                       # the whole round waits for the store
        except Exception:  # noqa: BLE001 - one cluster's trouble must not stop the others' healing
            log.exception("liveness round of cluster %s failed", cluster_id)
            continue
        totals["clusters"] += 1
        for key in ("events", "drained", "replans"):
            totals[key] += got[key]
    return totals


def cluster_poll(cluster_id: int, now: datetime | None = None) -> dict[str, int]:
    """Events, states, drains and healing of one cluster (see the module's docstring)."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return {"events": 0, "drained": 0, "replans": 0}
    meta, _ = ClusterLiveness.objects.get_or_create(cluster=cluster)
    key = mirror.store_key()
    after = meta.cursor if meta.store_key == key else None     # a new in-memory store starts a new stream
    if meta.store_key != key:
        ClusterLiveness.objects.filter(pk=meta.pk).update(cursor=None, store_key=key)
    recorded = 0
    while True:
        events = mirror.poll_events(cluster_id, after, limit=EVENTS_PAGE)
        if events:
            events_record(cluster, events)      # the cursor moves in the same transaction
            after = events[-1]["id"]
            recorded += len(events)
        if len(events) < EVENTS_PAGE:
            break
    if recorded:
        cutoff = timezone.now() - timedelta(days=settings.LIVENESS_HISTORY_DAYS)
        LivenessEvent.objects.filter(cluster=cluster, at__lt=cutoff).delete()
    states_apply(cluster, mirror.poll_server_states(cluster_id))
    drained = drains_check(cluster, now=now)
    job = heal(cluster_id, now=now)
    return {"events": recorded, "drained": drained, "replans": int(job is not None)}


EVENTS_PAGE = 500


@transaction.atomic
def events_record(cluster: Cluster, events: list[dict[str, Any]]) -> list[LivenessEvent]:
    """The store's transitions (oldest first) into the history; each server's record follows them, and the
    cluster's cursor moves past the last one (in the same transaction: no event is recorded twice)."""
    shape = adopted_shape(cluster)
    servers = {s.server_id: s for s in Server.objects.filter(cluster=cluster, server_id__in={e["server"] for e in events})}
    meta, _ = ClusterLiveness.objects.select_for_update().get_or_create(cluster=cluster)
    counts = dict(meta.transitions or {})
    out = []
    for e in events:
        at = e["at"] or timezone.now()
        out.append(LivenessEvent(cluster=cluster, kind=EventKind.TRANSITION, server=e["server"][:128],
                                 prev=e["prev"][:10], state=e["state"][:10], cause=e["cause"][:500], at=at,
                                 store_event=str(e["id"])[:64], plan_id=cluster.adopted_plan_id,
                                 chains=chains_through(shape, e["server"])))
        counts[e["state"]] = counts.get(e["state"], 0) + 1
        server = servers.get(e["server"])
        if server is not None:
            row = _row(server, lock=True)
            if _set_state(row, e["state"], at, e["cause"]):
                row.save(update_fields=ROW_FIELDS)
    LivenessEvent.objects.bulk_create(out)
    meta.transitions = counts
    meta.cursor = events[-1]["id"] if events else meta.cursor
    meta.save(update_fields=["transitions", "cursor"])
    return out


def states_apply(cluster: Cluster, states: list[dict[str, Any]]) -> int:
    """Make each server's record say what the store holds now; an owner's drain the store lost is applied again.
    Reads every record of the cluster in one query and writes only those that differ."""
    held = {s["server"]: s for s in states}
    rows = {r.server.server_id: r for r in ServerLiveness.objects.filter(server__cluster=cluster)
            .select_related("server")}
    todo: dict[str, tuple[str, Any]] = {}
    for sid, row in rows.items():
        st = held.get(sid)
        want = st["state"] if st is not None else "up"
        if row.drain_requested_at is not None and want not in ("draining", "down"):
            # the store lost the drain (restarted in-memory store, flushed Redis): the owner's drain stands
            st = mirror.mirror_state(cluster.pk, sid, "draining",
                                     f"drain requested by {row.drain_requested_by or 'the owner'} (applied again)")
            want = st["state"]
        if want != row.state:
            todo[sid] = (want, st["since"] if st else None)
    for sid, st in held.items():
        # never reported on, and the store lists it only as a server of the plan: up by default, no record
        if sid not in rows and not (st["state"] == "up" and st["since"] is None):
            todo[sid] = (st["state"], st["since"])
    servers = {s.server_id: s for s in Server.objects.filter(cluster=cluster, server_id__in=list(todo))}
    changed = 0
    for sid, (want, since) in todo.items():
        if sid not in servers:
            continue        # a server of an older plan, no longer in the cluster
        with transaction.atomic():
            row = _row(servers[sid], lock=True)
            if _set_state(row, want, since, "as the dispatcher's store holds it"):
                row.save(update_fields=ROW_FIELDS)
                changed += 1
    return changed


def drains_check(cluster: Cluster, now: datetime | None = None) -> int:
    """Draining servers with no lease in flight through them are drained (a history entry; healing re-plans)."""
    waiting = list(ServerLiveness.objects.filter(server__cluster=cluster, state="draining", drained_at__isnull=True)
                   .select_related("server"))
    if not waiting:
        return 0
    shape = adopted_shape(cluster)
    in_plan = shape.servers
    state = mirror.dispatch_state(cluster.pk) if any(r.server.server_id in in_plan for r in waiting) else {}
    done = 0
    for row in waiting:
        sid = row.server.server_id
        busy = leases_through(state, sid, shape) if sid in in_plan else 0
        if busy:
            continue
        at = now or timezone.now()
        with transaction.atomic():
            if not ServerLiveness.objects.filter(pk=row.pk, state="draining", drained_at__isnull=True) \
                    .update(drained_at=at):
                continue
            LivenessEvent.objects.create(
                cluster=cluster, kind=EventKind.DRAINED, server=sid, prev="draining", state="draining", at=at,
                cause="no lease in flight through it: it leaves the plan" if sid in in_plan
                else "no lease in flight through it (it holds no blocks of the adopted plan)",
                plan_id=cluster.adopted_plan_id, chains=chains_through(shape, sid))
        done += 1
    return done


# -- healing -----------------------------------------------------------------------------------------------

def _why(sid: str, row: ServerLiveness) -> str:
    if row.state == "draining":
        return f"server {sid} drained"
    if row.on_trial:
        return f"server {sid} down (failure reports; up on trial since, not heard from)"
    return f"server {sid} down" + (f" ({row.cause})" if row.cause else "")


def heal(cluster_id: int, now: datetime | None = None) -> Job | None:
    """Start a re-plan on the servers that are up when the adopted plan lost a server or one came back; the job
    started, or None (nothing owed, waiting, or refused: the log says why)."""
    now = now or timezone.now()
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or not cluster.adopted_plan_id:
        return None
    rows = states_of(cluster_id)
    if not any(row.state in ("down", "draining") or row.rejoined_at is not None or row.on_trial
               for row in rows.values()):
        return None         # nothing away, nothing back: the usual round ends here
    in_plan = adopted_shape(cluster).servers
    # lost: down, drained, or up only because a failure ban ran out (the store tries it again; the plan does not)
    lost = {sid: row for sid, row in rows.items()
            if sid in in_plan and (row.state == "down" or (row.state == "draining" and row.drained_at)
                                   or row.on_trial)}
    # back: up again after being away, with a sign of life (a heartbeat, the owner), not merely a ban run out
    back = {sid: row for sid, row in rows.items()
            if row.state == "up" and row.rejoined_at is not None and not row.on_trial}
    # a server back in a plan that still has it is owed nothing (it never left, or a re-plan took it back)
    settled = [row.pk for sid, row in back.items() if sid in in_plan]
    if settled:
        ServerLiveness.objects.filter(pk__in=settled).update(rejoined_at=None)
    back = {sid: row for sid, row in back.items() if sid not in in_plan}
    stable_s = settings.LIVENESS_REJOIN_STABLE_S
    returned = {sid: row for sid, row in back.items() if (now - row.rejoined_at).total_seconds() >= stable_s}
    if not lost and not returned:
        return None
    if not cluster.replan_on_server_change:
        return None         # the owner re-plans by hand (the history still shows what happened)
    if Job.objects.filter(cluster=cluster, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).exclude(trigger="") \
            .exists():
        return None         # a re-plan is under way: its outcome is judged first, then what is still owed
    with transaction.atomic():
        meta, _ = ClusterLiveness.objects.select_for_update().get_or_create(cluster=cluster)
        if meta.replan_at and (now - meta.replan_at).total_seconds() < settings.LIVENESS_REPLAN_MIN_INTERVAL_S:
            return None     # debounce: a flapping server does not start a re-plan storm
        leave_out = unavailable_servers(cluster_id)
        plannable = sorted(Server.objects.filter(cluster=cluster).exclude(server_id__in=list(leave_out))
                           .values_list("server_id", flat=True))
        key = [cluster.adopted_plan_id, plannable]
        if meta.replan_key == key:
            return None     # this plan on these servers was re-planned already, whatever came of it
        parts = [_why(sid, row) for sid, row in sorted(lost.items())]
        parts += [f"server {sid} back up" for sid in sorted(returned)]
        out = ", ".join(f"{sid} ({why})" for sid, why in sorted(leave_out.items())[:10])
        detail = "; ".join(parts) + f"; planned on the {len(plannable)} server(s) up" + \
            (f", leaving out {out}" if out else "")
        job = replan_trigger(cluster_id, Trigger.SERVERS, detail, leave_out=leave_out)
        if job is not None and sorted(s["id"] for s in job.scenario.get("servers", [])) != plannable:
            return None     # an earlier re-plan is still queued or running: judged first, then this one
        new = job is not None and job.pk != meta.replan_job_id
        meta.replan_key, meta.replan_at = key, now
        if job is not None:
            meta.replan_job = job
        meta.replans += int(new)
        meta.save(update_fields=["replan_key", "replan_at", "replan_job", "replans"])
        if job is None:
            return None
        # the history says which server's death, drain or return started it
        for sid, row in list(lost.items()) + list(returned.items()):
            entry = LivenessEvent.objects.filter(cluster=cluster, server=sid, replan_job__isnull=True)
            if row.state == "draining":
                entry = entry.filter(kind=EventKind.DRAINED)
            else:
                entry = entry.filter(kind=EventKind.TRANSITION, state="down" if row.on_trial else row.state)
            entry = entry.order_by("-at", "-id").first()
            if entry is not None:
                LivenessEvent.objects.filter(pk=entry.pk).update(replan_job=job)
        ServerLiveness.objects.filter(pk__in=[row.pk for row in returned.values()]).update(rejoined_at=None)
    log.info("cluster %s: %s -> re-plan job %s", cluster_id, detail, job.pk)
    return job if new else None
