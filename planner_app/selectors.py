"""Read paths: every query is scoped to its owner here, so views cannot forget it."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from .models import Cluster, Job, JobStatus, ModelSpec, Plan, PlanAdoption, ReplanSchedule, Server


def clusters_for(user) -> QuerySet[Cluster]:
    servers = Server.objects.select_related("latest_calibration").order_by("position", "id")
    return (Cluster.objects.filter(owner=user)
            .prefetch_related(Prefetch("servers", queryset=servers)))


def models_for(user) -> QuerySet[ModelSpec]:
    return ModelSpec.objects.filter(owner=user)


def jobs_for(user, *, with_plans: bool = True) -> QuerySet[Job]:
    qs = Job.objects.filter(owner=user)
    if with_plans:
        qs = qs.prefetch_related(Prefetch("plans", queryset=Plan.objects.defer("document").order_by("id")))
    return qs


def plans_for(user) -> QuerySet[Plan]:
    return Plan.objects.filter(job__owner=user).select_related("job")


def model_document(model: ModelSpec) -> dict[str, Any]:
    """The scenario's ``model`` object; the stored numbers are explicit, so they win over the architecture."""
    doc: dict[str, Any] = {"name": model.name, "num_blocks": model.num_blocks,
                           "block_size_gb": model.block_size_gb, "cache_size_gb": model.cache_size_gb}
    if model.flops_per_token_gflops is not None:
        doc["flops_per_token_gflops"] = model.flops_per_token_gflops
    if model.architecture:
        doc["architecture"] = model.architecture
    return doc


SERVER_FIGURES = ("memory_gb", "comm_time_s", "block_time_s", "tflops", "mem_bandwidth_gb_s", "rtt_ms",
                  "link_bandwidth_gbps")


def server_document(server: Server, *, measured: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": server.server_id}
    for name in SERVER_FIGURES:
        value = getattr(server, name)
        if value is not None:
            doc[name] = value
    if measured and server.latest_calibration is not None:
        doc["calibration"] = server.latest_calibration.figures
    return doc


def cluster_scenario_document(cluster: Cluster, model: ModelSpec | None, workload: dict[str, Any] | None,
                              *, measured: bool = True, servers=None) -> dict[str, Any]:
    """The scenario document of a cluster with a model and a workload (not validated here)."""
    servers = cluster.servers.all() if servers is None else servers
    doc: dict[str, Any] = {"name": cluster.name,
                           "servers": [server_document(s, measured=measured) for s in servers]}
    if model is not None:
        doc["model"] = model_document(model)
    if workload is not None:
        doc["workload"] = workload
    return doc


# ---------------------------------------------------------------------------
# re-planning
# ---------------------------------------------------------------------------

def adoptions_for(user, cluster: Cluster) -> QuerySet[PlanAdoption]:
    return (PlanAdoption.objects.filter(cluster=cluster, cluster__owner=user)
            .select_related("adopted_by").defer("diff"))


def adopted_plan_of(cluster: Cluster) -> tuple[Plan | None, PlanAdoption | None]:
    """The cluster's adopted plan (with its job) and the adoption that made it so."""
    plan = Plan.objects.select_related("job").filter(pk=cluster.adopted_plan_id).first()
    adoption = (PlanAdoption.objects.select_related("adopted_by").filter(cluster=cluster, plan=plan).first()
                if plan else None)
    return plan, adoption


def candidates_for(user, cluster: Cluster) -> QuerySet[Plan]:
    """Feasible plans of the cluster that are not adopted now, newest first (re-plans and ordinary jobs)."""
    qs = (Plan.objects.filter(job__owner=user, job__cluster=cluster, feasible=True).select_related("job")
          .defer("document").order_by("-created_at", "-id"))
    return qs.exclude(pk=cluster.adopted_plan_id) if cluster.adopted_plan_id else qs


def schedules_for(cluster: Cluster) -> QuerySet[ReplanSchedule]:
    return (ReplanSchedule.objects.filter(cluster=cluster)
            .select_related("periodic_task__interval", "periodic_task__crontab"))


def _rate_of(scenario: dict[str, Any] | None) -> float | None:
    rate = ((scenario or {}).get("workload") or {}).get("arrival_rate")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def planned_arrival_rate(cluster: Cluster) -> float | None:
    """The arrival rate the cluster was last planned for: the newest of the adopted plan and a later re-plan.

    A re-plan kept as a candidate counts too, so a steady drifted load does not re-plan again and again.
    """
    plan = Plan.objects.select_related("job").filter(pk=cluster.adopted_plan_id).first()
    adoption = PlanAdoption.objects.filter(cluster=cluster, plan=plan).only("created_at").first() if plan else None
    latest = (Job.objects.filter(cluster=cluster).exclude(trigger="")
              .exclude(status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).order_by("-created_at", "-id")
              .only("scenario", "created_at").first())
    if latest is not None and (adoption is None or latest.created_at > adoption.created_at):
        return _rate_of(latest.scenario)
    if plan is not None:
        rate = plan.document.get("arrival_rate")
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else _rate_of(plan.job.scenario)
    return _rate_of({"workload": cluster.default_workload})
