"""Read paths of jobs and plans, scoped to their owner."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from .models import Job, Plan


def jobs_for(user, *, with_plans: bool = True) -> QuerySet[Job]:
    qs = Job.objects.filter(owner=user)
    if with_plans:
        qs = qs.prefetch_related(Prefetch("plans", queryset=Plan.objects.defer("document").order_by("id")))
    return qs


def plans_for(user) -> QuerySet[Plan]:
    return Plan.objects.filter(job__owner=user).select_related("job")
