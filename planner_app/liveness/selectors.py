"""Read paths of liveness: states, masked chains, what a re-plan leaves out, the history, leases through a server."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Union

from django.db.models import F, Q, QuerySet

from solvers.plan_format import PlanFormatError, read_chains

from ..catalog.models import Cluster, Server
from ..planning.models import Plan
from .models import BAN_OVER_CAUSE, MASKING_STATES, PLANNABLE_STATES, ClusterLiveness, LivenessEvent, ServerLiveness


def states_of(cluster_id: int) -> dict[str, ServerLiveness]:
    """server id -> its recorded state, for the servers that have one (the others count as up)."""
    rows = ServerLiveness.objects.filter(server__cluster_id=cluster_id).select_related("server")
    return {row.server.server_id: row for row in rows}


# up only because a failure ban ran out, not heard from since (ServerLiveness.on_trial)
ON_TRIAL = (Q(state="up", cause=BAN_OVER_CAUSE)
            & (Q(last_heartbeat_at__isnull=True) | Q(last_heartbeat_at__lt=F("since"))))


def unavailable_servers(cluster_id: int) -> dict[str, str]:
    """server id -> why, for the cluster's servers a re-plan must leave out: down, draining, joining, and up only
    because a failure ban ran out (no sign of life since).

    Registered with re-planning (PlannerAppConfig.ready): every re-plan, whatever started it, plans on the
    servers that are up (or suspect: a probation, not a verdict)."""
    rows = ServerLiveness.objects.filter(server__cluster_id=cluster_id)
    out = dict(rows.exclude(state__in=PLANNABLE_STATES).values_list("server__server_id", "state"))
    out.update({sid: "failed, on trial" for sid in rows.filter(ON_TRIAL).values_list("server__server_id", flat=True)})
    return out


@dataclass(frozen=True)
class PlanShape:
    """What liveness needs of a plan: the servers holding blocks, and each chain's servers in the document's order
    (the dispatcher's chain index)."""

    servers: frozenset[str]
    chains: tuple[tuple[str, ...], ...]


def shape_of(plan_doc: Mapping[str, Any] | None) -> PlanShape:
    if not plan_doc:
        return PlanShape(frozenset(), ())
    try:
        chains = tuple(tuple(ch.servers) for ch in read_chains(plan_doc))
    except PlanFormatError:
        chains = ()
    servers = frozenset(p["server"] for p in plan_doc.get("placement") or [] if int(p.get("num_blocks") or 0) > 0)
    return PlanShape(servers, chains)


@lru_cache(maxsize=64)
def _stored_shape(plan_id: int, created_at: str) -> PlanShape:
    # a stored plan never changes: read its document once per process, not at every poll (20,000-server
    # plans are megabytes); created_at is in the key because test databases hand out the same ids again
    return shape_of(Plan.objects.filter(pk=plan_id).values_list("document", flat=True).first())


def adopted_shape(cluster: Cluster) -> PlanShape:
    """The shape of the cluster's adopted plan (an empty one without)."""
    if not cluster.adopted_plan_id:
        return PlanShape(frozenset(), ())
    created = Plan.objects.filter(pk=cluster.adopted_plan_id).values_list("created_at", flat=True).first()
    if created is None:
        return PlanShape(frozenset(), ())
    return _stored_shape(cluster.adopted_plan_id, created.isoformat())


PlanLike = Union[PlanShape, Mapping[str, Any], None]


def _shape(plan: PlanLike) -> PlanShape:
    return plan if isinstance(plan, PlanShape) else shape_of(plan)


def plan_chains(plan: PlanLike) -> tuple[tuple[str, ...], ...]:
    """The servers of each chain of a plan (a document or its shape), in the document's order."""
    return _shape(plan).chains


def plan_servers(plan: PlanLike) -> frozenset[str]:
    """The servers that hold blocks in a plan (a document or its shape)."""
    return _shape(plan).servers


def chains_through(plan: PlanLike, server: str) -> list[int]:
    return [k for k, servers in enumerate(plan_chains(plan)) if server in servers]


def masked_chains(plan: PlanLike, states: Mapping[str, str]) -> list[dict[str, Any]]:
    """The plan's chains that pass through a server in a masking state: ``[{"chain", "servers"}]``,
    each with the servers that mask it (a chain is masked while any of its servers is not up)."""
    out = []
    for k, servers in enumerate(plan_chains(plan)):
        why = [s for s in servers if states.get(s, "up") in MASKING_STATES]
        if why:
            out.append({"chain": k, "servers": why})
    return out


def leases_through(dispatch_state: Mapping[str, Any], server: str, plan: PlanLike = None) -> int:
    """Leases in flight on chains through ``server``, in every plan generation that still has leases.

    Read from the store's state: its generations in flight, each with per-chain busy counts and hops.  A state
    without them (a store that does not report generations) is read as its current chains with the servers of
    the plan."""
    raw = dispatch_state.get("_raw") or {}
    generations = raw.get("generations")
    if isinstance(generations, list):
        busy = 0
        for gen in generations:
            counts, hops = gen.get("in_progress") or [], gen.get("hops") or []
            for k, chain_hops in enumerate(hops):
                if k < len(counts) and any(h[0] == server for h in chain_hops):
                    busy += int(counts[k] or 0)
        return busy
    chains = plan_chains(plan)
    return sum(int(c.get("in_progress") or 0) for c in dispatch_state.get("chains") or []
               if c.get("chain") is not None and c["chain"] < len(chains) and server in chains[c["chain"]])


def servers_view(cluster: Cluster) -> dict[str, Any]:
    """The cluster page's liveness panel: each server's state, the chains masked now, the counters."""
    recorded = states_of(cluster.pk)
    shape = adopted_shape(cluster)
    in_plan = shape.servers
    servers = []
    for server in Server.objects.filter(cluster=cluster).order_by("position", "id").only("server_id"):
        row = recorded.get(server.server_id)
        servers.append({
            "server": server.server_id,
            "state": row.state if row else "up",
            "since": row.since if row else None,
            "cause": row.cause if row else "",
            "reported": row is not None,
            "last_heartbeat_at": row.last_heartbeat_at if row else None,
            "heartbeat": row.heartbeat if row else {},
            "drain": drain_view(row),
            "in_plan": server.server_id in in_plan,
        })
    states = {s["server"]: s["state"] for s in servers}
    meta = ClusterLiveness.objects.filter(cluster=cluster).select_related("replan_job").first()
    job = meta.replan_job if meta else None
    return {
        "cluster": cluster.pk, "adopted_plan": cluster.adopted_plan_id, "servers": servers,
        "masked_chains": masked_chains(shape, states), "chains": len(shape.chains),
        "last_replan": None if job is None else {"job": job.pk, "status": job.status, "at": meta.replan_at,
                                                 "detail": job.trigger_detail},
    }


def drain_view(row: ServerLiveness | None) -> dict[str, Any] | None:
    if row is None or (row.state != "draining" and row.drain_requested_at is None):
        return None
    return {"requested_at": row.drain_requested_at, "requested_by": row.drain_requested_by or None,
            "drained_at": row.drained_at}


def history_of(cluster: Cluster, *, server: str | None = None, kinds: Iterable[str] | None = None) -> QuerySet:
    """The cluster's liveness history, newest first, with the re-plan each entry started."""
    qs = LivenessEvent.objects.filter(cluster=cluster).select_related("replan_job")
    if server:
        qs = qs.filter(server=server)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    return qs


def metrics_rows() -> dict[str, Any]:
    """What /api/v1/liveness/metrics reports, for every cluster: states, masked chains, counters."""
    states: dict[int, dict[str, str]] = {}
    heartbeats: dict[int, dict[str, Any]] = {}
    for cid, sid, state, beat in ServerLiveness.objects.values_list(
            "server__cluster_id", "server__server_id", "state", "last_heartbeat_at"):
        states.setdefault(cid, {})[sid] = state
        if beat is not None:
            heartbeats.setdefault(cid, {})[sid] = beat
    adopted = dict(Cluster.objects.filter(adopted_plan__isnull=False).values_list("pk", "adopted_plan_id"))
    servers: dict[int, list[str]] = {}
    for cid, sid in (Server.objects.filter(cluster_id__in=set(states) | set(adopted))
                     .order_by("cluster_id", "position", "id").values_list("cluster_id", "server_id")):
        servers.setdefault(cid, []).append(sid)
    created = dict(Plan.objects.filter(pk__in=list(adopted.values())).values_list("pk", "created_at"))
    masked = {cid: len(masked_chains(_stored_shape(plan, created[plan].isoformat()), states.get(cid, {})))
              for cid, plan in adopted.items() if plan in created}
    counters = {row.cluster_id: (row.transitions or {}, row.replans) for row in ClusterLiveness.objects.all()}
    return {"states": states, "servers": servers, "heartbeats": heartbeats, "masked": masked, "counters": counters}
