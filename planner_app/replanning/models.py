"""Re-planning: which plan a cluster runs (adoptions) and when it is re-planned (schedules)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..catalog.models import Cluster
from ..planning.models import Plan


class PlanAdoption(models.Model):
    """One adoption of a plan for a cluster: the history of what ran, who or what chose it, and why."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="adoptions")
    # SET_NULL: the history outlives a deleted plan
    plan = models.ForeignKey(Plan, null=True, on_delete=models.SET_NULL, related_name="adoptions")
    previous_plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    adopted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    trigger = models.CharField(max_length=16, blank=True, default="")   # Trigger of the re-plan; blank: by a user
    detail = models.CharField(max_length=500, blank=True, default="")
    gain = models.FloatField(null=True, blank=True)
    diff = models.JSONField(default=dict)
    webhook_status = models.IntegerField(null=True, blank=True)
    webhook_error = models.CharField(max_length=500, blank=True, default="")
    webhook_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"plan {self.plan_id} adopted for {self.cluster}"


class ReplanSchedule(models.Model):
    """A cluster's re-planning schedule; beat runs it through its own django-celery-beat PeriodicTask."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="replan_schedules")
    # CASCADE both ways: deleting the periodic task (e.g. in the admin) drops this row, and a
    # post_delete signal (signals.py) drops the periodic task of a deleted schedule or cluster.
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.CASCADE,
                                         related_name="replan_schedule")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"re-plan schedule {self.pk} of {self.cluster}"
