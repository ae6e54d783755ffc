"""Adoption: a plan becomes the one a cluster runs, by a user or by a re-plan that clears the minimum gain."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ...catalog.models import Cluster
from ...core.errors import Conflict
from ...planning.models import Job, Plan
from ..gain import replan_gain
from ..models import PlanAdoption
from .webhooks import adoption_notify_enqueue


def replan_decide(job: Job, new_plan: Plan | None, scenario) -> dict[str, Any]:
    """Adopt a re-plan's result if it clears the cluster's minimum gain; else it stays a candidate."""
    cluster = Cluster.objects.select_for_update().filter(pk=job.cluster_id).first()
    if cluster is None or new_plan is None:
        return {"adopted": False, "why": "the cluster no longer exists"}
    if not new_plan.feasible:
        return {"adopted": False, "why": "the re-plan is not feasible"}
    current = Plan.objects.filter(pk=cluster.adopted_plan_id).first()
    judged = replan_gain(current, new_plan.document, scenario)
    min_gain = float(job.options.get("min_gain", cluster.replan_min_gain))
    adopted = judged["forced"] or (judged["gain"] is not None and judged["gain"] >= min_gain)
    outcome = {**judged, "min_gain": min_gain, "adopted": adopted, "plan": new_plan.pk,
               "against_plan": current.pk if current else None}
    if adopted:
        adoption = adoption_create(cluster, new_plan, current, user=None, trigger=job.trigger,
                          detail=f"{job.trigger}: {judged['why']}", gain=judged["gain"])
        outcome["adoption"] = adoption.pk
    else:
        outcome["why"] = f"kept as a candidate: {judged['why']} is below the minimum gain {min_gain:.1%}" \
            if judged["gain"] is not None else f"kept as a candidate: {judged['why']}"
    return outcome


def adoption_create(cluster: Cluster, plan_row: Plan, previous: Plan | None, *, user, trigger: str, detail: str,
                    gain: float | None) -> PlanAdoption:
    """Record that ``cluster`` now runs ``plan_row`` (with its diff from ``previous``) and queue the webhook.

    The caller holds the cluster's row lock (or has just created the cluster) inside a transaction.
    """
    from solvers.switching import plan_diff

    adoption = PlanAdoption.objects.create(
        cluster=cluster, plan=plan_row, previous_plan=previous, adopted_by=user, trigger=trigger, detail=detail[:500],
        gain=gain, diff=plan_diff(previous.document if previous else None, plan_row.document))
    Cluster.objects.filter(pk=cluster.pk).update(adopted_plan=plan_row)
    if cluster.replan_webhook_url:
        transaction.on_commit(lambda: adoption_notify_enqueue(adoption.pk))
    return adoption


def plan_adopt(user, plan_row: Plan) -> PlanAdoption:
    """A user adopts one of their plans for the plan's cluster."""
    from rest_framework.exceptions import ValidationError
    if plan_row.job.cluster_id is None:
        raise ValidationError({"plan": ["this plan was not made for a stored cluster; only a cluster's plans "
                                        "can be adopted"]})
    if not plan_row.feasible:
        raise ValidationError({"plan": ["an infeasible plan cannot be adopted"]})
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=plan_row.job.cluster_id)
        if cluster.adopted_plan_id == plan_row.pk:
            raise Conflict(f"plan {plan_row.pk} is already the adopted plan of cluster {cluster.pk}")
        current = Plan.objects.filter(pk=cluster.adopted_plan_id).first()
        return adoption_create(cluster, plan_row, current, user=user, trigger="",
                      detail=f"adopted by {user.get_username()}", gain=None)
