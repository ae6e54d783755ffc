"""Re-plan requests: a switching-aware re-plan job of a cluster against its adopted plan."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping

from django.conf import settings

from ...catalog.models import Cluster, Server
from ...catalog.selectors import cluster_scenario_document
from ...core.validation import parse_scenario_document
from ...planning.models import Job, JobStatus, Trigger
from ...planning.services import job_create

log = logging.getLogger("planner_app.replanning")


class ReplanRefused(Exception):
    """The cluster cannot be re-planned as it stands (no model, no servers, no workload, invalid figures)."""


# server id -> why a re-plan must leave it out (its state: down, draining, ...), per cluster.  Registered by the
# liveness domain in PlannerAppConfig.ready, so every re-plan plans on the servers that are up without
# re-planning importing the layer above it; None (no liveness domain loaded): every server counts.
UnavailableServers = Callable[[int], Mapping[str, str]]
_unavailable: UnavailableServers | None = None


def register_unavailable_servers(provider: UnavailableServers | None) -> None:
    global _unavailable
    _unavailable = provider


def unavailable_servers(cluster_id: int) -> dict[str, str]:
    return dict(_unavailable(cluster_id)) if _unavailable is not None else {}


def replan_workload(cluster: Cluster) -> dict[str, Any] | None:
    """The cluster's default workload, with the observed arrival rate when the service was told one."""
    workload = dict(cluster.default_workload or {})
    if cluster.observed_arrival_rate:
        workload["arrival_rate"] = cluster.observed_arrival_rate
        workload.pop("trace", None)      # a trace fixes its own rate
    return workload or None


def replan_request(cluster_id: int, trigger: str, detail: str, *,
                   leave_out: Mapping[str, str] | None = None) -> Job:
    """Queue a switching-aware re-plan of the cluster against its adopted plan.

    It plans on the cluster's servers but those in ``leave_out`` (server id -> why; by default the servers
    that are not up: ``unavailable_servers``), so a down or draining server gets no blocks; an adopted
    plan that uses one is then replaced whatever the gain (``gain.replan_gain``: forced).
    A trigger (not a manual request) that finds a re-plan of the cluster still queued or
    running gets that job back instead of a second one.
    """
    from rest_framework.exceptions import ValidationError

    cluster = Cluster.objects.select_related("model").filter(pk=cluster_id).first()
    if cluster is None:
        raise ReplanRefused("the cluster no longer exists")
    if trigger != Trigger.MANUAL:
        active = (Job.objects.filter(cluster=cluster, status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
                  .exclude(trigger="").order_by("-id").first())
        if active is not None:
            return active
    if cluster.model is None:
        raise ReplanRefused("the cluster has no model")
    servers = list(Server.objects.filter(cluster=cluster).select_related("latest_calibration"))
    if not servers:
        raise ReplanRefused("the cluster has no servers")
    leave_out = unavailable_servers(cluster.pk) if leave_out is None else dict(leave_out)
    if leave_out:
        servers = [s for s in servers if s.server_id not in leave_out]
        if not servers:
            out = ", ".join(f"{sid} {why}" for sid, why in sorted(leave_out.items())[:10])
            raise ReplanRefused(f"no server is up to plan on ({out})")
    workload = replan_workload(cluster)
    if workload is None:
        raise ReplanRefused("the cluster has no default workload (set default_workload)")
    doc = cluster_scenario_document(cluster, cluster.model, workload, servers=servers)
    try:
        scenario = parse_scenario_document(doc, "")
    except ValidationError as exc:
        from ..core.errors import flatten, summary
        raise ReplanRefused("the cluster cannot be planned: " + summary(flatten(exc.detail))) from None
    options = {"calibration": "measured", "simulate_requests": settings.DEFAULT_SIMULATE_REQUESTS, "seed": 1,
               "delta": cluster.replan_delta, "min_gain": cluster.replan_min_gain}
    resolved = scenario.to_dict()
    if trigger != Trigger.MANUAL:
        earlier = _same_replan(cluster, resolved, options)
        if earlier is not None:
            return earlier
    return job_create(cluster.owner, scenario=resolved, input_scenario=doc, algorithms=["proposed"],
                      options=options, cluster=cluster, model=cluster.model, trigger=trigger,
                      trigger_detail=detail[:500], previous_plan_id=cluster.adopted_plan_id)


def _same_replan(cluster: Cluster, scenario: dict[str, Any], options: dict[str, Any]) -> Job | None:
    """An earlier re-plan that already answered exactly this input, so a schedule tick adds no duplicate candidate.

    Same input: the same resolved scenario (servers, figures, workload and its arrival rate), the same
    adopted plan to switch from, and the same delta and minimum gain.
    """
    resolved = json.loads(json.dumps(scenario))
    recent = (Job.objects.filter(cluster=cluster, status=JobStatus.SUCCEEDED, previous_plan_id=cluster.adopted_plan_id)
              .exclude(trigger="").order_by("-id").only("scenario", "options")[:20])
    for job in recent:
        if (job.scenario == resolved and job.options.get("delta") == options["delta"]
                and job.options.get("min_gain") == options["min_gain"]):
            return job
    return None


def replan_trigger(cluster_id: int, trigger: str, detail: str, *,
                   leave_out: Mapping[str, str] | None = None) -> Job | None:
    """An automatic re-plan: never fails its caller (a calibration, an edit); a refusal is logged."""
    try:
        return replan_request(cluster_id, trigger, detail, leave_out=leave_out)
    except ReplanRefused as exc:
        log.warning("re-plan of cluster %s (%s: %s) not started: %s", cluster_id, trigger, detail, exc)
        return None


