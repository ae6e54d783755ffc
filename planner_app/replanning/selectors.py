"""Read paths of re-planning."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from django.db.models import QuerySet

from ..catalog.models import Cluster
from ..planning.models import Job, JobStatus, Plan
from .models import PlanAdoption, ReplanSchedule


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
    qs = (Plan.objects.filter(job__owner=user, job__cluster=cluster, feasible=True)
          .defer("document").order_by("-created_at", "-id"))
    return qs.exclude(pk=cluster.adopted_plan_id) if cluster.adopted_plan_id else qs


def adopted_job_id(cluster: Cluster) -> int | None:
    """The job of the cluster's adopted plan, without loading the plan's document."""
    if not cluster.adopted_plan_id:
        return None
    return Plan.objects.filter(pk=cluster.adopted_plan_id).values_list("job_id", flat=True).first()


def workload_key(workload: Any) -> dict[str, Any]:
    """What a plan was made for, as candidates are grouped: a digest of the whole workload, its rate and trace length.

    Two plans with the same digest were planned for exactly the same load (rate, token
    counts, trace), so their bounds compare; different digests mean different loads.
    """
    w = workload if isinstance(workload, dict) else {}
    canonical = json.dumps(w, sort_keys=True, separators=(",", ":"), default=str)
    rate, trace = w.get("arrival_rate"), w.get("trace")
    return {"digest": hashlib.sha256(canonical.encode()).hexdigest()[:16],
            "arrival_rate": float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None,
            "trace_requests": len(trace) if isinstance(trace, list) else None}


def workloads_of(job_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """job id -> workload key, reading only each job's workload (not its servers)."""
    rows = Job.objects.filter(pk__in=set(job_ids)).values_list("pk", "scenario__workload")
    return {pk: workload_key(workload) for pk, workload in rows}


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


def schedule_description(schedule: ReplanSchedule) -> str:
    task = schedule.periodic_task
    if task.interval_id:
        return f"every {task.interval.every} {task.interval.period}"
    c = task.crontab
    return f"cron {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}" if c else "no schedule"
